//! A kernel module's `depends=` entry, read from its `.modinfo` strings
//! (NUL-separated `key=value` pairs that `modinfo` prints; Linux
//! `include/linux/moduleparam.h`, `scripts/mod/modpost.c` writes `depends=`),
//! and the check that a load order puts every module after what it needs.

#![deny(unsafe_code)]

/// The modules `module` (its file's bytes) depends on, by name with `-`
/// read as `_` (as `modprobe` does); `None` when it has no `depends=` entry.
pub(crate) fn depends(module: &[u8]) -> Option<Vec<String>> {
    const KEY: &[u8] = b"depends=";
    let start = module
        .windows(KEY.len() + 1)
        .position(|window| window[0] == 0 && &window[1..] == KEY)?
        + 1
        + KEY.len();
    let rest = &module[start..];
    let value = &rest[..rest
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(rest.len())];
    Some(
        String::from_utf8_lossy(value)
            .split(',')
            .filter(|name| !name.is_empty())
            .map(|name| name.replace('-', "_"))
            .collect(),
    )
}

/// Checks that each module of `order` (name, bytes) comes after every
/// module it depends on; a dependency outside the list must be built in.
pub(crate) fn check_order<'module>(
    order: impl IntoIterator<Item = (&'module str, &'module [u8])>,
) -> Result<(), String> {
    let mut loaded: Vec<&str> = Vec::new();
    for (name, bytes) in order {
        let Some(needs) = depends(bytes) else {
            return Err(format!(
                "{name}.ko has no depends= entry: not a kernel module?"
            ));
        };
        if let Some(missing) = needs.iter().find(|need| !loaded.contains(&need.as_str())) {
            return Err(format!(
                "{name} depends on {missing}, which is not loaded before it"
            ));
        }
        loaded.push(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_depends_among_the_other_modinfo_strings() {
        let module =
            b"\x7fELF...\0license=GPL\0depends=virtio,virtio_ring,net-failover\0name=virtio_net\0";
        assert_eq!(
            depends(module).unwrap(),
            ["virtio", "virtio_ring", "net_failover"]
        );
        assert_eq!(
            depends(b"\0depends=\0name=failover\0").unwrap(),
            Vec::<String>::new()
        );
        // Cut off before its NUL: the value runs to the end.
        assert_eq!(depends(b"\0depends=virtio").unwrap(), ["virtio"]);
        assert_eq!(depends(b"no modinfo here"), None);
        assert_eq!(depends(b"xdepends=virtio\0"), None);
        assert_eq!(depends(b""), None);
    }

    #[test]
    fn the_order_must_load_dependencies_first() {
        let ring: &[u8] = b"\0depends=\0";
        let virtio: &[u8] = b"\0depends=\0";
        let mmio: &[u8] = b"\0depends=virtio,virtio_ring\0";
        assert!(
            check_order([
                ("virtio_ring", ring),
                ("virtio", virtio),
                ("virtio_mmio", mmio)
            ])
            .is_ok()
        );
        let error = check_order([("virtio", virtio), ("virtio_mmio", mmio)]).unwrap_err();
        assert!(error.contains("virtio_ring"), "{error}");
        let error = check_order([("bogus", b"plain bytes".as_slice())]).unwrap_err();
        assert!(error.contains("no depends="), "{error}");
    }
}
