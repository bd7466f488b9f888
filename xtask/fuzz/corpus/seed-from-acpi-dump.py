#!/usr/bin/env python3
"""Turns a `mote.acpi=dump` capture (the `acpi-dump` lines a booted guest
prints) into seeds: an `acpi_tables` input (flags byte 0, then the
PhysicalImage encoding of kernel/src/fuzzing.rs: u64 entry = the RSDP,
then per contiguous range u64 paddr, u16 length, bytes; little-endian) and
a `dsdt_aml` input (the DSDT without its 36-byte header).

usage: seed-from-acpi-dump.py DUMP LABEL   (writes corpus/{acpi_tables,dsdt_aml}/LABEL)
"""
import os
import struct
import sys

dump, label = sys.argv[1], sys.argv[2]
rsdp, dsdt, ranges = None, None, []
for line in open(dump):
    words = line.split()
    if len(words) < 3 or words[0] != "acpi-dump":
        continue
    if words[1] == "rsdp":
        rsdp = int(words[2], 16)
    elif words[1] == "table":
        if words[2] == "DSDT":
            dsdt = (int(words[3], 16), int(words[4]))
    else:
        paddr, data = int(words[1], 16), bytes.fromhex(words[2])
        if ranges and ranges[-1][0] + len(ranges[-1][1]) == paddr:
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + data)
        else:
            ranges.append((paddr, data))
if rsdp is None:
    sys.exit(f"{dump}: no `acpi-dump rsdp` line")
image = bytearray([0]) + struct.pack("<Q", rsdp)
for paddr, data in ranges:
    for at in range(0, len(data), 0xFFFF):
        part = data[at:at + 0xFFFF]
        image += struct.pack("<QH", paddr + at, len(part)) + part
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "acpi_tables", label), "wb") as out:
    out.write(image)
if dsdt is not None:
    paddr, length = dsdt
    for start, data in ranges:
        if start <= paddr and paddr + length <= start + len(data):
            with open(os.path.join(here, "dsdt_aml", label), "wb") as out:
                out.write(data[paddr - start + 36:paddr - start + length])
            break
