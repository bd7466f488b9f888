//! The kernel command lines xtask boots mote with.

/// Report, then power off: what `run`, the KVM probe and most boot cases use.
pub(crate) const READY_CMDLINE: &str = "console=ttyS0 mote.exit=ready";

/// The kernel option that dumps the tslog trace after the report.
const TSLOG_DUMP_OPTION: &str = "mote.tslog=1";
/// The dump, and each record's index to port 0x80 as it is stored.
const TSLOG_MARKERS_OPTION: &str = "mote.tslog=markers";

/// Linux's `ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>`
/// for QEMU's user network (docs/system/devices/net.rst): the guest is
/// 10.0.2.15, the host (gateway and the only address allowed to POST
/// /poweroff) 10.0.2.2.
pub(crate) const STATIC_IP_PARAMETER: &str =
    "ip=10.0.2.15:10.0.2.2:10.0.2.2:255.255.255.0:mote:eth0:off";
/// DHCP from slirp's built-in server (10.0.2.2), which hands out 10.0.2.15 first.
pub(crate) const DHCP_IP_PARAMETER: &str = "ip=dhcp";

/// [`READY_CMDLINE`] with the tslog dump: what `trace` and `bench` boot.
pub(crate) fn traced_cmdline() -> String {
    format!("{READY_CMDLINE} {TSLOG_DUMP_OPTION}")
}

/// [`traced_cmdline`] with the dump's markers on (`cargo xtask trace --exits`).
pub(crate) fn traced_cmdline_with_markers() -> String {
    format!("{READY_CMDLINE} {TSLOG_MARKERS_OPTION}")
}

/// The command line of a served boot, before any extra words. No
/// `mote.exit=ready`: with it the kernel powers off after its report.
pub(crate) fn served_cmdline(ip_parameter: &str) -> String {
    format!("console=ttyS0 {ip_parameter}")
}

/// `base`, then the user's `--append` text after a space, if any.
pub(crate) fn with_append(base: &str, append: Option<&str>) -> String {
    match append {
        Some(extra) if !extra.is_empty() => format!("{base} {extra}"),
        _ => base.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        assert_eq!(
            traced_cmdline(),
            "console=ttyS0 mote.exit=ready mote.tslog=1"
        );
        assert_eq!(
            served_cmdline(STATIC_IP_PARAMETER),
            "console=ttyS0 ip=10.0.2.15:10.0.2.2:10.0.2.2:255.255.255.0:mote:eth0:off"
        );
        assert_eq!(with_append("a", Some("b c")), "a b c");
        assert_eq!(with_append("a", Some("")), "a");
        assert_eq!(with_append("a", None), "a");
    }
}
