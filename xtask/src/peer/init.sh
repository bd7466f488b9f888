#!/bin/sh
# /init of mote's Linux peer, built into its initramfs by `cargo xtask peer
# linux` (xtask/src/peer/; docs/bench.md). busybox sh as PID 1: load the
# virtio-mmio NIC driver, configure the NIC from the kernel's ip=, serve
# /health with busybox httpd, print `peer: ready`. With peer.exit=ready it
# powers off right after that line; otherwise GET /cgi-bin/poweroff does.
# Any step that fails prints `peer: failed: <step>` and powers off.

fail() {
    echo "peer: failed: $*"
    poweroff -f
    sleep 10
}

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"

# In dependency order (xtask checks each module's depends= against it).
for module in @MODULES@; do
    insmod "/lib/modules/$module.ko" || fail "insmod $module"
done

ip_parameter=""
exit_at=""
for word in $(cat /proc/cmdline); do
    case "$word" in
        ip=*) ip_parameter="${word#ip=}" ;;
        peer.exit=*) exit_at="${word#peer.exit=}" ;;
    esac
done
[ -n "$ip_parameter" ] || fail "no ip= on the kernel command line"

# ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>
# (Linux Documentation/admin-guide/nfs/nfsroot.rst); empty fields stay empty.
saved_ifs=$IFS
IFS=:
set -- $ip_parameter
IFS=$saved_ifs
client=$1
gateway=$3
netmask=${4:-255.255.255.0}
device=${6:-eth0}
[ -n "$client" ] || fail "ip= gives no client address"

tries=0
while [ ! -e "/sys/class/net/$device" ]; do
    tries=$((tries + 1))
    [ "$tries" -le 200 ] || fail "no $device 2 s after loading virtio_net"
    sleep 0.01
done
ip link set lo up || fail "bring lo up"
ifconfig "$device" "$client" netmask "$netmask" up || fail "configure $device"
if [ -n "$gateway" ]; then
    route add default gw "$gateway" || fail "route via $gateway"
fi

httpd -f -p 80 -h /www &
httpd_pid=$!
tries=0
until wget -q -O /dev/null http://127.0.0.1/health 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -le 200 ] || fail "httpd does not answer GET /health on 127.0.0.1"
    sleep 0.01
done

echo "peer: ready"
if [ "$exit_at" = ready ]; then
    echo "peer: poweroff"
    poweroff -f
    sleep 10
fi
wait "$httpd_pid"
fail "httpd exited"
