//! Multiboot headers and the 32-bit entry that switches the boot CPU to long mode.
//!
//! Both multiboot1 (QEMU `-kernel`, with several modules) and multiboot2 (GRUB) enter at
//! `start32` in 32-bit protected mode with paging off, EAX holding the loader's magic and EBX
//! the physical address of its information structure. The entry builds boot page tables that
//! map the first 4 GiB twice (identity, for the switch, and at the direct-map base) plus the
//! image at its link address, enables long mode and jumps to `rust_start` on the boot stack.
use core::arch::global_asm;

use crate::percpu::{CPU_INFO_SIZE, STACKS, STACK_SIZE};

/// Multiboot1 header flags: page-align modules, provide a memory map.
const MB1_FLAGS: u32 = 0b11;

global_asm!(
    r#"
    .section .multiboot_header, "a"
    .balign 4
multiboot1_header:
    .long 0x1BADB002
    .long {mb1_flags}
    .long -(0x1BADB002 + {mb1_flags})

    .balign 8
multiboot2_header:
    .long 0xE85250D6
    .long 0
    .long multiboot2_header_end - multiboot2_header
    .long -(0xE85250D6 + (multiboot2_header_end - multiboot2_header))
    /* end tag */
    .short 0
    .short 0
    .long 8
multiboot2_header_end:

    .section .boot.text, "ax"
    .code32
    .global start32
start32:
    cli
    cld
    mov edi, eax
    mov esi, ebx

    /* Long mode is required: CPUID 0x80000001 EDX bit 29. */
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb 90f
    mov eax, 0x80000001
    cpuid
    bt edx, 29
    jnc 90f

    /* Four L2 tables mapping 0..4 GiB with 2 MiB pages. */
    mov ecx, 0
    mov ebx, offset boot_l2
1:  mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov [ebx + ecx * 8], eax
    mov eax, ecx
    shr eax, 11
    mov [ebx + ecx * 8 + 4], eax
    inc ecx
    cmp ecx, 2048
    jne 1b

    /* L3 for the low 4 GiB: four entries. */
    mov eax, offset boot_l2
    or eax, 0x3
    mov [boot_l3_low], eax
    add eax, 0x1000
    mov [boot_l3_low + 8], eax
    add eax, 0x1000
    mov [boot_l3_low + 16], eax
    add eax, 0x1000
    mov [boot_l3_low + 24], eax

    /* L3 for the image: slot 0x141 maps the first GiB at VIRT_OFFSET. */
    mov eax, offset boot_l2
    or eax, 0x3
    mov [boot_l3_image + 0x141 * 8], eax

    /* L4: identity (slot 0), direct map (slot 262), image (slot 261). */
    mov eax, offset boot_l3_low
    or eax, 0x3
    mov [boot_l4], eax
    mov [boot_l4 + 262 * 8], eax
    mov eax, offset boot_l3_image
    or eax, 0x3
    mov [boot_l4 + 261 * 8], eax

    mov eax, offset boot_l4
    mov cr3, eax
    mov eax, cr4
    or eax, (1 << 5)          /* PAE */
    mov cr4, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, (1 << 8) | (1 << 11) | (1 << 0)   /* LME | NXE | SCE */
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | (1 << 0)  /* PG | WP | PE */
    mov cr0, eax

    lgdt [boot_gdt_ptr]
    mov eax, offset start64_low
    push 0x08
    push eax
    retf

    /* No long mode: say so on COM1 and stop. */
90: mov esi, offset no_long_mode_msg
91: lodsb
    test al, al
    jz 92f
    mov dx, 0x3f8
    out dx, al
    jmp 91b
92: cli
    hlt
    jmp 92b

    .code64
start64_low:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    movabs rax, offset start64_high
    jmp rax

    .section .boot.data, "aw"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_ptr:
    .short 23
    .long boot_gdt
no_long_mode_msg:
    .asciz "Xenolith: this CPU does not support 64-bit long mode\r\n"

    .section .boot.pagetables, "aw"
    .balign 4096
    .global boot_l4
boot_l4:
    .fill 512, 8, 0
boot_l3_low:
    .fill 512, 8, 0
boot_l3_image:
    .fill 512, 8, 0
boot_l2:
    .fill 2048, 8, 0

    .text
    .code64
start64_high:
    lea rsp, [rip + {bsp_stack} + {stack_size} - {cpu_info_size}]
    xor ebp, ebp
    mov edi, edi
    mov esi, esi
    call {rust_start}
    ud2
"#,
    mb1_flags = const MB1_FLAGS,
    bsp_stack = sym STACKS,
    stack_size = const STACK_SIZE,
    cpu_info_size = const CPU_INFO_SIZE,
    rust_start = sym crate::rust_start,
);
