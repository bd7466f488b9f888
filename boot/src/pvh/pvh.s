# mote's PVH entry: the loader jumps here in 32-bit protected mode, paging
# off, ebx = physical address of hvm_start_info (xen docs/misc/pvh.pandoc;
# docs/pvh.md). The note that names this entry is `pvh_note!` in mod.rs.
#
# Under a KVM that emulates code running without paging, every instruction
# here is emulated one at a time (docs/pvh.md), so this stub does only what
# the CPU mode demands: the page tables are prepared at assembly time, .bss
# is zeroed and everything else is done in 64-bit mode.

    .pushsection .text.pvh_entry, "ax"
    .code32
    .global pvh_entry
pvh_entry:
    rdtsc                           # the very first instruction: boot's t0
    mov %eax, %esi
    mov %edx, %edi
    # qboot leaves its ROM GDT and the real-mode IVT (base 0, limit 0xffff)
    # in GDTR/IDTR: load ours before anything can fault. The IDT is empty,
    # so a fault here triple-faults (QEMU -no-reboot exits) rather than
    # jumping through real-mode vectors.
    lgdt pvh_gdt_descriptor
    lidt pvh_null_idt_descriptor
    rdtsc                           # stamp 1: descriptor tables loaded
    mov %eax, pvh_stamps + 8
    mov %edx, pvh_stamps + 12
    mov $pvh_pml4, %eax
    mov %eax, %cr3
    mov ${cr4_pae}, %eax
    mov %eax, %cr4
    mov ${msr_efer}, %ecx
    rdmsr
    or ${efer_lme}, %eax
    wrmsr
    mov %cr0, %eax
    or ${cr0_pg_wp}, %eax
    mov %eax, %cr0
    ljmp ${code_selector}, $pvh_entry64

    .code64
pvh_entry64:
    rdtsc                           # stamp 2: long mode, paging on
    mov %eax, pvh_stamps + 16
    mov %edx, pvh_stamps + 20
    mov ${data_selector}, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov %esi, %r12d                 # entry TSC, low half
    mov %edi, %r13d                 # entry TSC, high half
    lea __bss_start(%rip), %rdi
    lea __bss_end(%rip), %rcx
    sub %rdi, %rcx
    shr $3, %rcx                    # linker.ld asserts 8-byte alignment
    rep stosq                       # eax is 0
    rdtsc                           # stamp 3: .bss zeroed, about to call Rust
    mov %eax, pvh_stamps + 24(%rip)
    mov %edx, pvh_stamps + 28(%rip)
    mov %r12d, pvh_stamps(%rip)     # stamp 0: the first instruction
    mov %r13d, pvh_stamps + 4(%rip)
    lea ({stack} + {stack_size})(%rip), %rsp
    xor %ebp, %ebp
    mov %ebx, %edi                  # arg 0: start_info physical address
    shl $32, %r13
    or %r12, %r13
    mov %r13, %rsi                  # arg 1: entry TSC
    call {rust_entry}
    ud2
    .popsection

    .pushsection .rodata.pvh_gdt, "a"
    .balign 16
pvh_gdt:
    .quad 0
    .quad {gdt_code64}
    .quad {gdt_data}
pvh_gdt_end:
pvh_gdt_descriptor:
    .word pvh_gdt_end - pvh_gdt - 1
    .long pvh_gdt
pvh_null_idt_descriptor:
    .word 0
    .long 0
    .popsection

    # TSC stamps taken by the stub, read by the kernel's tracer. In .data,
    # not .bss: stamps 1-2 are written before .bss is zeroed.
    .pushsection .data.pvh_stamps, "aw"
    .balign 8
    .global pvh_stamps
pvh_stamps:
    .fill {stamp_count}, 8, 0
    .popsection

    # The boot identity map (mote_boot::protocol::boot_map): the first 4 GiB
    # in 2 MiB pages, covering RAM below 3 GiB and the MMIO window
    # (virtio-mmio 0xfeb00000, IOAPIC 0xfec00000, LAPIC 0xfee00000). The
    # kernel maps RAM above 4 GiB itself.
    .pushsection .data.pvh_page_tables, "aw"
    .balign 4096
    .global pvh_pml4
pvh_pml4:
    .quad pvh_pdpt + {table_flags}
    .fill {table_entries} - 1, 8, 0
    .global pvh_pdpt
pvh_pdpt:
    .set pvh_directory, 0
    .rept {directories}
    .quad pvh_pd + pvh_directory * {table_entries} * 8 + {table_flags}
    .set pvh_directory, pvh_directory + 1
    .endr
    .fill {table_entries} - {directories}, 8, 0
pvh_pd:
    .set pvh_page, 0
    .rept {pages}
    .quad (pvh_page << {page_shift}) | {page_flags}
    .set pvh_page, pvh_page + 1
    .endr
    .popsection
