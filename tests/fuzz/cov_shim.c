/* Coverage glue between GCC's -fsanitize-coverage=trace-pc,trace-cmp and atheris's libFuzzer.
 *
 * GCC 12 emits __sanitizer_cov_trace_pc() in every basic block; the libFuzzer bundled with
 * atheris rejects that legacy callback and wants inline 8-bit counters (a clang-only mode).
 * This file, linked into each instrumented extension and built without instrumentation,
 * turns the callback into a counter per hashed caller PC. The fuzz runner registers the
 * counters (and a PC table of the same size) with libFuzzer through ctypes, because atheris
 * loads libFuzzer with RTLD_LOCAL. The comparison callbacks tail-call libFuzzer's own, so its
 * table of recent compares sees the instrumented call sites.
 *
 * Everything here is hidden except tapsense_cov_info and tapsense_cov_set_hooks, so the
 * modules' copies do not collide.
 */
#include <stddef.h>
#include <stdint.h>

#define SLOTS_LOG2 17
#define SLOTS (1u << SLOTS_LOG2)
#define HIDDEN __attribute__((visibility("hidden")))

static uint8_t counters[SLOTS] __attribute__((aligned(64)));
static uintptr_t pcs[2 * SLOTS];

HIDDEN void __sanitizer_cov_trace_pc(void) {
    uintptr_t pc = (uintptr_t)__builtin_return_address(0);
    counters[(uint32_t)((pc * 0x9E3779B97F4A7C15ull) >> (64 - SLOTS_LOG2))]++;
}

typedef void (*cmp1_fn)(uint8_t, uint8_t);
typedef void (*cmp2_fn)(uint16_t, uint16_t);
typedef void (*cmp4_fn)(uint32_t, uint32_t);
typedef void (*cmp8_fn)(uint64_t, uint64_t);
typedef void (*switch_fn)(uint64_t, uint64_t *);
static void *hooks[9];

#define FWD(name, type, idx, T)                                  \
    HIDDEN void name(T a, T b) {                                 \
        type f = (type)hooks[idx];                               \
        if (f) f(a, b);                                          \
    }
FWD(__sanitizer_cov_trace_cmp1, cmp1_fn, 0, uint8_t)
FWD(__sanitizer_cov_trace_cmp2, cmp2_fn, 1, uint16_t)
FWD(__sanitizer_cov_trace_cmp4, cmp4_fn, 2, uint32_t)
FWD(__sanitizer_cov_trace_cmp8, cmp8_fn, 3, uint64_t)
FWD(__sanitizer_cov_trace_const_cmp1, cmp1_fn, 4, uint8_t)
FWD(__sanitizer_cov_trace_const_cmp2, cmp2_fn, 5, uint16_t)
FWD(__sanitizer_cov_trace_const_cmp4, cmp4_fn, 6, uint32_t)
FWD(__sanitizer_cov_trace_const_cmp8, cmp8_fn, 7, uint64_t)

HIDDEN void __sanitizer_cov_trace_switch(uint64_t val, uint64_t *cases) {
    switch_fn f = (switch_fn)hooks[8];
    if (f) f(val, cases);
}

/* The counters and a PC table (pairs of PC and flags) with one entry per counter. */
void tapsense_cov_info(uint8_t **start, uint8_t **stop, uintptr_t **pcs_start,
                       uintptr_t **pcs_stop) {
    for (uint32_t i = 0; i < SLOTS; i++) {
        pcs[2 * i] = (uintptr_t)&counters[i];  /* a distinct, stable "PC" per slot */
        pcs[2 * i + 1] = 0;
    }
    *start = counters;
    *stop = counters + SLOTS;
    *pcs_start = pcs;
    *pcs_stop = pcs + 2 * SLOTS;
}

void tapsense_cov_set_hooks(void **fns) {
    for (int i = 0; i < 9; i++) hooks[i] = fns[i];
}

/* Floating-point compares: nothing for libFuzzer to learn from here. */
HIDDEN void __sanitizer_cov_trace_cmpf(float a, float b) { (void)a; (void)b; }
HIDDEN void __sanitizer_cov_trace_cmpd(double a, double b) { (void)a; (void)b; }
