#include "CKernels.h"
#include "internal.h"
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

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

/* AVX512_BF16 (CPUID.(7,1):EAX[5]) and AVX512_VNNI (CPUID.(7,0):ECX[11]) on top of the AVX-512 level, whose
 * detection already checked that the OS saves the 512-bit state. */
static int g_avx512_bf16 = -1, g_avx512_vnni = -1;

static void detect_avx512_extensions(void) {
    int bf16 = 0, vnni = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (ck_isa_detect() >= CK_ISA_AVX512 && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        vnni = (c >> 11) & 1;
        unsigned max_sub = a;
        if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) bf16 = (a >> 5) & 1;
    }
#endif
    g_avx512_vnni = vnni;
    g_avx512_bf16 = bf16;
}

int ck_cpu_has_avx512_bf16(void) {
    if (g_avx512_bf16 < 0) detect_avx512_extensions();
    return g_avx512_bf16;
}

int ck_cpu_has_avx512_vnni(void) {
    if (g_avx512_vnni < 0) detect_avx512_extensions();
    return g_avx512_vnni;
}
