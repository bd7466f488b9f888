#!/usr/bin/env bash
# Captures what QEMU microvm (through qboot) hands a PVH kernel, at the
# kernel's first instruction: stops QEMU (TCG) at the PVH entry with a gdb
# breakpoint and dumps the memory that holds start_info, its memory map,
# command line and module list (qboot's stack and F-segment) and the ACPI
# tables. Usage: capture-qemu.sh <kernel> <out-dir> acpi|noacpi
# Needs gdb and qemu-system-x86_64; writes <out-dir>/ebx and <paddr>.bin
# dumps. The seed tool (`cargo run -p mote-fuzz --bin mote-fuzz-seed`)
# turns the dumps into seeds.
set -euo pipefail
kernel=$1 out=$2 mode=$3
mkdir -p "$out"
entry=0x$(readelf -n "$kernel" | awk '/description data/ {print $6$5$4$3; exit}')
machine=microvm,x-option-roms=off,rtc=on,pic=off
[ "$mode" = noacpi ] && machine=$machine,acpi=off
disk=$out/disk.img
truncate -s 1M "$disk"
printf 'mote-fuzz-capture-initrd\n' > "$out/initrd"
port=$((20000 + RANDOM % 10000))
timeout 60 qemu-system-x86_64 -M "$machine" -accel tcg -cpu max -m 128M \
    -nodefaults -no-user-config -display none -serial none -no-reboot \
    -kernel "$kernel" -initrd "$out/initrd" \
    -append "console=ttyS0 mote.exit=ready ip=10.0.2.15::10.0.2.2:255.255.255.0" \
    -drive "file=$disk,if=none,id=disk0,format=raw" -device virtio-blk-device,drive=disk0 \
    -gdb "tcp:127.0.0.1:$port" -S &
qemu=$!
trap 'kill $qemu 2>/dev/null || true' EXIT
sleep 1
# 128 MiB guest: qboot's stack and low heap below 0x10000, its F-segment
# and NVS heap at 0xd0000-0x100000, the initrd and ACPI tables near the top
# of RAM.
timeout 60 gdb -batch -nx \
    -ex 'set architecture i386:x86-64' \
    -ex "target remote 127.0.0.1:$port" \
    -ex "hbreak *$entry" \
    -ex 'continue' \
    -ex "printf \"%#x\\n\", \$ebx" \
    -ex "dump binary memory $out/0x6000.bin 0x6000 0x10000" \
    -ex "dump binary memory $out/0xd0000.bin 0xd0000 0x100000" \
    -ex "dump binary memory $out/0x7fe0000.bin 0x7fe0000 0x8000000" \
    -ex 'kill' > "$out/gdb.log" 2>&1
grep -o "^0x[0-9a-f]*$" "$out/gdb.log" | tail -1 > "$out/ebx"
echo "capture-qemu: $mode: start_info at $(cat "$out/ebx")"
