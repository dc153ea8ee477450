/* f16 / bf16 -> f32 conversion (weights are stored in half precision; math runs in f32). */
#include "internal.h"
#include <string.h>

void ck_f16_to_f32_scalar(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = ck_half_to_float(src[i]);
}
void ck_bf16_to_f32_scalar(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(dst + i, &bits, sizeof(float));
    }
}

#if CK_X86
CK_TARGET_AVX2 static void f16_to_f32_f16c(float *dst, const uint16_t *src, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = ck_half_to_float(src[i]);
}
CK_TARGET_AVX512 static void bf16_to_f32_avx512(float *dst, const uint16_t *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
    ck_bf16_to_f32_scalar(dst + i, src + i, n - i);
}
#endif

void ck_f16_to_f32(float *dst, const uint16_t *src, size_t n) {
#if CK_X86
    if (ck_isa_active() >= CK_ISA_AVX2) { f16_to_f32_f16c(dst, src, n); return; }
#endif
    ck_f16_to_f32_scalar(dst, src, n);
}
void ck_bf16_to_f32(float *dst, const uint16_t *src, size_t n) {
#if CK_X86
    if (ck_isa_active() >= CK_ISA_AVX512) { bf16_to_f32_avx512(dst, src, n); return; }
#endif
    ck_bf16_to_f32_scalar(dst, src, n);
}
