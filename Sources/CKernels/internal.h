#ifndef DREAMSR_CKERNELS_INTERNAL_H
#define DREAMSR_CKERNELS_INTERNAL_H
/* Helpers shared by the kernel files. Each SIMD variant is a static function compiled for its ISA with a
 * per-function target attribute; CK_DISPATCH picks one at run time. */
#include "CKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define CK_X86 1
#define CK_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define CK_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define CK_X86 0
#endif

#endif
