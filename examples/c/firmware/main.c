/* C firmware for the Cortex-M4F (Arm MPS2 AN386 under qemu-system-arm): runs a model embedded
 * as a C array (`mote convert --emit-c model.h`) through libmote_runtime.a, with only the
 * generated header mote.h, on every golden input, and checks each output byte for byte against
 * TensorFlow Lite Micro's. Prints over semihosting (newlib + librdimon):
 *
 *   mote-c-firmware arena=<bytes> cases=<n>
 *   case <i> ticks=<t> ok|MISMATCH
 *   calib ticks=<t> instructions=<n>
 *   <n> cases, <ops> ops: all outputs byte-identical | MISMATCH
 *
 * Built and run by targets/boards/ci.sh (see examples/c/firmware/build.sh). */
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "model.h"
#include "mote.h"

extern const uint8_t golden_inputs[], golden_inputs_end[], golden_outputs[], golden_outputs_end[];

/* The arena: exactly the model's size, from the generated header. */
static uint8_t arena[MODEL_ARENA_BYTES] __attribute__((aligned(16)));
static uint8_t storage[MOTE_SESSION_BYTES] __attribute__((aligned(MOTE_SESSION_ALIGN)));
static uint8_t output[1024];

static size_t tensor_bytes(MoteSession *s, int32_t out) {
    size_t n = out ? mote_output_count(s) : mote_input_count(s), total = 0;
    for (size_t i = 0; i < n; i++) {
        MoteTensorInfo t;
        if (mote_tensor_info(s, out, i, &t) != MOTE_OK) {
            return 0;
        }
        total += t.bytes;
    }
    return total;
}

int main(void) {
    MoteSession *s = NULL;
    MoteStatus st = mote_session_init(storage, sizeof storage, model_model, MODEL_MODEL_BYTES,
                                      arena, sizeof arena, &s);
    if (st != MOTE_OK) {
        printf("error: session: %s\n", mote_status_str(st));
        return 1;
    }
    size_t case_in = tensor_bytes(s, 0), case_out = tensor_bytes(s, 1);
    size_t in_len = (size_t)(golden_inputs_end - golden_inputs);
    size_t exp_len = (size_t)(golden_outputs_end - golden_outputs);
    if (case_in == 0 || case_out > sizeof output || in_len % case_in ||
        exp_len != in_len / case_in * case_out) {
        printf("error: golden sizes do not fit the model (%u/%u bytes per case)\n",
               (unsigned)case_in, (unsigned)case_out);
        return 1;
    }
    size_t cases = in_len / case_in, bad = 0;
    printf("mote-c-firmware arena=%u cases=%u\n", (unsigned)sizeof arena, (unsigned)cases);
    for (size_t c = 0; c < cases; c++) {
        size_t at = 0;
        for (size_t i = 0; i < mote_input_count(s); i++) {
            MoteTensorInfo t;
            mote_tensor_info(s, 0, i, &t);
            if ((st = mote_set_input(s, i, golden_inputs + c * case_in + at, t.bytes)) != MOTE_OK) {
                printf("error: input: %s\n", mote_status_str(st));
                return 1;
            }
            at += t.bytes;
        }
        uint64_t start = board_ticks();
        st = mote_invoke(s);
        uint64_t ticks = board_ticks() - start;
        if (st != MOTE_OK) {
            printf("error: invoke: %s\n", mote_status_str(st));
            return 1;
        }
        at = 0;
        for (size_t i = 0; i < mote_output_count(s); i++) {
            MoteTensorInfo t;
            mote_tensor_info(s, 1, i, &t);
            mote_get_output(s, i, output + at, t.bytes);
            at += t.bytes;
        }
        int same = memcmp(output, golden_outputs + c * case_out, case_out) == 0;
        bad += !same;
        printf("case %u ticks=%lu %s\n", (unsigned)c, (unsigned long)ticks,
               same ? "ok" : "MISMATCH");
    }
    const uint32_t calib = 1u << 20;
    uint64_t start = board_ticks();
    board_calibration_loop(calib);
    printf("calib ticks=%lu instructions=%lu\n", (unsigned long)(board_ticks() - start),
           (unsigned long)(2u * calib));
    printf("%u cases, %u ops: %s\n", (unsigned)cases, (unsigned)mote_op_count(s),
           bad ? "MISMATCH" : "all outputs byte-identical");
    return bad ? 1 : 0;
}
