/* What startup.c gives main.c. */
#ifndef MOTE_C_FIRMWARE_BOARD_H
#define MOTE_C_FIRMWARE_BOARD_H
#include <stdint.h>

/* SysTick ticks (core clock) since reset; under qemu -icount shift=0, proportional to executed
 * instructions (board_calibration_loop gives the ratio). */
uint64_t board_ticks(void);
/* Executes 2·n instructions. */
void board_calibration_loop(uint32_t n);
/* Ends the run through semihosting: qemu exits 0 when ok, 1 otherwise. */
void board_exit(int ok);
#endif
