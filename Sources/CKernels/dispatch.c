#include "CKernels.h"
#include "internal.h"
#include <stdlib.h>
#include <string.h>

static ck_isa g_detected = (ck_isa)-1;
static ck_isa g_active = (ck_isa)-1;

ck_isa ck_isa_detect(void) {
    if ((int)g_detected >= 0) return g_detected;
    ck_isa isa = CK_ISA_SCALAR;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = CK_ISA_AVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        isa = CK_ISA_AVX512;
#endif
    g_detected = isa;
    return isa;
}

static ck_isa parse_env(ck_isa fallback) {
    const char *v = getenv("DREAMSR_KERNEL_ISA");
    if (!v) return fallback;
    if (strcmp(v, "scalar") == 0) return CK_ISA_SCALAR;
    if (strcmp(v, "avx2") == 0) return CK_ISA_AVX2;
    if (strcmp(v, "avx512") == 0) return CK_ISA_AVX512;
    return fallback;
}

ck_isa ck_isa_active(void) {
    if ((int)g_active >= 0) return g_active;
    ck_isa best = ck_isa_detect();
    ck_isa want = parse_env(best);
    g_active = want > best ? best : want;
    return g_active;
}

ck_isa ck_isa_force(ck_isa isa) {
    ck_isa best = ck_isa_detect();
    g_active = isa > best ? best : isa;
    return g_active;
}

const char *ck_isa_name(ck_isa isa) {
    switch (isa) {
    case CK_ISA_AVX512: return "avx512";
    case CK_ISA_AVX2: return "avx2";
    default: return "scalar";
    }
}
