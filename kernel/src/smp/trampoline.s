# The application processors' way from real mode to the kernel. A STARTUP
# IPI starts each one at offset 0 of the page bring_up.rs copies this code
# to (CS = page >> 4, IP = 0; Intel SDM vol. 3 §9.4.4.1); the boot CPU
# wrote the TrampolineData at {data} in the same page first. Every CPU
# runs this at once: nothing here is written but the two counters, with
# locked instructions. Real mode -> 32-bit protected mode (the data's GDT)
# -> long mode (the boot CPU's page tables, EFER, CR0, CR4) -> a stack of
# its own (a slot claimed by a locked add) -> Rust, with the TSC read at
# its first instruction and on reaching long mode, for the trace.

    .pushsection .text.ap_trampoline, "ax"
    .balign 16
    .global ap_trampoline_start
ap_trampoline_start:
    .code16
    cli
    cld
    rdtsc                               # the TSC at the first instruction
    mov %eax, %ebp                      # (kept in ebp:esi through the modes)
    mov %edx, %esi
    mov %cs, %ax
    mov %ax, %ds
    lock incl {data}+{started}          # "this CPU answered its STARTUP IPI"
    xor %ebx, %ebx
    mov %ax, %bx
    shl $4, %ebx                        # ebx = the page's physical address
    lgdtl {data}+{gdt_pointer}
    mov %cr0, %eax
    or ${cr0_pe}, %eax
    mov %eax, %cr0
    ljmpl *{data}+{far32}               # to ap_trampoline32, CS = code32

    .code32
    .global ap_trampoline32
ap_trampoline32:
    mov ${data_selector}, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov ${cr4_pae}, %eax
    mov %eax, %cr4
    mov {data}+{cr3}(%ebx), %eax        # the boot page tables: below 4 GiB
    mov %eax, %cr3
    mov ${msr_efer}, %ecx
    mov {data}+{efer}(%ebx), %eax
    mov {data}+{efer}+4(%ebx), %edx
    wrmsr                               # EFER.LME (and whatever else the boot CPU has)
    mov {data}+{cr0}(%ebx), %eax
    mov %eax, %cr0                      # paging on: compatibility mode
    ljmpl *{data}+{far64}(%ebx)         # to ap_trampoline64, CS = code64
                                        # (no stack yet: ESP is 0 after INIT)

    .code64
    .global ap_trampoline64
ap_trampoline64:
    mov %ebx, %ebx                      # the upper half is undefined
    mov {data}+{cr4}(%rbx), %rax
    mov %rax, %cr4
    rdtsc
    shl $32, %rdx
    mov %eax, %eax
    or %rax, %rdx                       # arg 2: the TSC in long mode
    mov %esi, %esi
    shl $32, %rsi
    mov %ebp, %ebp
    or %rbp, %rsi                       # arg 1: the TSC at the first instruction
    mov $1, %eax
    lock xadd %eax, {data}+{slots}(%rbx)
    cmp {data}+{slot_count}(%rbx), %eax
    jae ap_trampoline_halt              # more CPUs than slots: none is left
    mov {data}+{stack_tops}(%rbx,%rax,8), %rsp
    xor %ebp, %ebp
    mov %eax, %edi                      # arg 0: the slot
    call *{data}+{entry}(%rbx)
ap_trampoline_halt:
    cli
    hlt
    jmp ap_trampoline_halt
    .global ap_trampoline_end
ap_trampoline_end:
    .popsection
