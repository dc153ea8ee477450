#ifndef DREAMSR_CKERNELS_INTERNAL_H
#define DREAMSR_CKERNELS_INTERNAL_H
/* Helpers shared by the kernel files. Each SIMD variant is a static function compiled for its ISA with a
 * per-function target attribute; CK_DISPATCH picks one at run time. */
#include "CKernels.h"

#include <string.h>

/* IEEE half to float32, exact (subnormals normalised, inf / NaN payload kept). */
static inline float ck_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { e++; mant <<= 1; } while ((mant & 0x400u) == 0);
            mant &= 0x3FFu;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#if defined(__x86_64__)
#include <immintrin.h>
#define CK_X86 1
#define CK_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define CK_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define CK_X86 0
#endif

#endif
