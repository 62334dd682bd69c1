/* Runs a .mote model from C through libmote_runtime.a and checks its outputs.
 *
 *   host MODEL.mote INPUTS.bin EXPECTED.bin
 *
 * INPUTS.bin holds one or more cases (every input back to back), EXPECTED.bin the outputs of
 * each case (e.g. the golden fixtures of quantize/tests/fixtures/golden/<model>/). Exits 0 when
 * every output is byte-identical, 1 otherwise. Uses only the generated header, mote.h. The same
 * source builds for the host (gcc) and for aarch64 Linux (aarch64-linux-gnu-gcc, run under
 * qemu-aarch64). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mote.h"

static unsigned char *read_file(const char *path, size_t *len, size_t align) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t cap = ((size_t)n + align - 1) / align * align;
    unsigned char *buf = aligned_alloc(align, cap ? cap : align);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "%s: read failed\n", path);
        exit(2);
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static uint64_t fake_clock(void *ctx) {
    uint64_t *t = ctx;
    return ++*t;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.mote INPUTS.bin EXPECTED.bin\n", argv[0]);
        return 2;
    }
    size_t model_len, in_len, exp_len;
    unsigned char *model = read_file(argv[1], &model_len, MOTE_ALIGN);
    unsigned char *inputs = read_file(argv[2], &in_len, 16);
    unsigned char *expected = read_file(argv[3], &exp_len, 16);

    size_t arena_len = 0;
    MoteStatus st = mote_arena_bytes(model, model_len, &arena_len);
    if (st != MOTE_OK) {
        fprintf(stderr, "model: %s\n", mote_status_str(st));
        return 1;
    }
    unsigned char *arena = aligned_alloc(MOTE_ALIGN, arena_len ? (arena_len + 15) / 16 * 16 : 16);
    static unsigned char storage[MOTE_SESSION_BYTES] __attribute__((aligned(MOTE_SESSION_ALIGN)));
    MoteSession *s = NULL;
    st = mote_session_init(storage, sizeof storage, model, model_len, arena, arena_len, &s);
    if (st != MOTE_OK) {
        fprintf(stderr, "session: %s\n", mote_status_str(st));
        return 1;
    }

    size_t case_in = 0, case_out = 0;
    for (size_t i = 0; i < mote_input_count(s); i++) {
        MoteTensorInfo t;
        mote_tensor_info(s, 0, i, &t);
        case_in += t.bytes;
    }
    for (size_t i = 0; i < mote_output_count(s); i++) {
        MoteTensorInfo t;
        mote_tensor_info(s, 1, i, &t);
        case_out += t.bytes;
    }
    if (case_in == 0 || in_len % case_in || exp_len != in_len / case_in * case_out) {
        fprintf(stderr, "inputs/expected sizes do not fit the model (%zu/%zu bytes per case)\n",
                case_in, case_out);
        return 1;
    }
    size_t cases = in_len / case_in, bad = 0;
    unsigned char *out = malloc(case_out ? case_out : 1);
    for (size_t c = 0; c < cases; c++) {
        size_t at = 0;
        for (size_t i = 0; i < mote_input_count(s); i++) {
            MoteTensorInfo t;
            mote_tensor_info(s, 0, i, &t);
            if ((st = mote_set_input(s, i, inputs + c * case_in + at, t.bytes)) != MOTE_OK) {
                fprintf(stderr, "input: %s\n", mote_status_str(st));
                return 1;
            }
            at += t.bytes;
        }
        if ((st = mote_invoke(s)) != MOTE_OK) {
            fprintf(stderr, "invoke: %s\n", mote_status_str(st));
            return 1;
        }
        at = 0;
        for (size_t i = 0; i < mote_output_count(s); i++) {
            MoteTensorInfo t;
            mote_tensor_info(s, 1, i, &t);
            mote_get_output(s, i, out + at, t.bytes);
            at += t.bytes;
        }
        if (memcmp(out, expected + c * case_out, case_out) != 0) {
            fprintf(stderr, "case %zu: output differs\n", c);
            bad++;
        }
    }

    /* The per-operator profile, with a counting clock (one tick per call). */
    size_t ops = mote_op_count(s);
    uint64_t *ticks = calloc(ops ? ops : 1, sizeof *ticks), clock = 0;
    st = mote_invoke_profiled(s, fake_clock, &clock, ticks, ops);
    if (st != MOTE_OK || ops == 0 || mote_op_name(s, 0) == NULL) {
        fprintf(stderr, "profile: %s\n", mote_status_str(st));
        return 1;
    }
    printf("%zu cases, %zu ops (first %s), arena %zu bytes: %s\n", cases, ops, mote_op_name(s, 0),
           arena_len, bad ? "MISMATCH" : "all outputs byte-identical");
    return bad ? 1 : 0;
}
