/* Startup of the C firmware on the Cortex-M4F (MPS2 AN386): the vector table, a reset handler
 * that enables the FPU, copies .data, zeroes .bss and opens the semihosting streams (no C++
 * constructors to run), a SysTick
 * counter for the cost, and a semihosting exit that reports success or failure to qemu. */
#include <stdint.h>
#include <string.h>

#include "board.h"

extern uint32_t __data_start, __data_end, __data_load, __bss_start__, __bss_end__, __stack_top;
extern void initialise_monitor_handles(void);
extern int main(void);

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_RELOAD 0x00FFFFFFu

static volatile uint32_t systick_wraps;

void systick_handler(void) { systick_wraps++; }

uint64_t board_ticks(void) {
    for (;;) {
        uint32_t before = systick_wraps;
        uint32_t current = SYST_CVR;
        if (systick_wraps == before) {
            return ((uint64_t)before << 24) | (SYST_RELOAD - current);
        }
    }
}

void board_calibration_loop(uint32_t n) {
    /* Two instructions per iteration (subs, bne), as in the Rust firmware. */
    __asm__ volatile("1: subs %0, #1\n bne 1b" : "+r"(n) : : "cc");
}

void board_exit(int ok) {
    /* Semihosting SYS_EXIT: ADP_Stopped_ApplicationExit (qemu exits 0) or
     * ADP_Stopped_RunTimeErrorUnknown (qemu exits 1). */
    register uint32_t r0 __asm__("r0") = 0x18;
    register uint32_t r1 __asm__("r1") = ok ? 0x20026u : 0x20023u;
    __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
    for (;;) {
    }
}

static void fault_handler(void) { board_exit(0); }

void reset_handler(void) {
    SCB_CPACR |= 0xFu << 20; /* CP10, CP11: full access to the FPU */
    __asm__ volatile("dsb\n isb");
    memcpy(&__data_start, &__data_load, (size_t)((char *)&__data_end - (char *)&__data_start));
    memset(&__bss_start__, 0, (size_t)((char *)&__bss_end__ - (char *)&__bss_start__));
    initialise_monitor_handles();
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 0x7; /* core clock, interrupt, enable */
    board_exit(main() == 0);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top),
    reset_handler,
    fault_handler, /* NMI */
    fault_handler, /* HardFault */
    fault_handler, /* MemManage */
    fault_handler, /* BusFault */
    fault_handler, /* UsageFault */
    0, 0, 0, 0,
    fault_handler, /* SVCall */
    fault_handler, /* DebugMon */
    0,
    fault_handler, /* PendSV */
    systick_handler,
};
