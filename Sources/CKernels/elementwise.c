/* Elementwise kernels: scalar references and AVX2 / AVX-512 variants. */
#include "internal.h"
#include <string.h>

void ck_add_inplace_scalar(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
void ck_axpby_scalar(float *y, const float *x, float a, float b, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a * y[i] + b * x[i];
}
void ck_scale_inplace_scalar(float *x, float a, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] *= a;
}
void ck_leaky_relu_inplace_scalar(float *x, float slope, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] >= 0.0f ? x[i] : slope * x[i];
}
void ck_add_channel_bias_scalar(float *x, const float *bias, size_t channels, size_t plane) {
    for (size_t c = 0; c < channels; c++) {
        float b = bias[c];
        float *p = x + c * plane;
        for (size_t i = 0; i < plane; i++) p[i] += b;
    }
}

#if CK_X86
CK_TARGET_AVX512 static void add_inplace_avx512(float *y, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_maskz_loadu_ps(m, x + i)));
    }
}
CK_TARGET_AVX2 static void add_inplace_avx2(float *y, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] += x[i];
}
CK_TARGET_AVX512 static void axpby_avx512(float *y, const float *x, float a, float b, size_t n) {
    __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(y + i), _mm512_mul_ps(vb, _mm512_loadu_ps(x + i))));
    for (; i < n; i++) y[i] = a * y[i] + b * x[i];
}
CK_TARGET_AVX2 static void axpby_avx2(float *y, const float *x, float a, float b, size_t n) {
    __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(y + i), _mm256_mul_ps(vb, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] = a * y[i] + b * x[i];
}
CK_TARGET_AVX512 static void scale_inplace_avx512(float *x, float a, size_t n) {
    __m512 va = _mm512_set1_ps(a);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(va, _mm512_loadu_ps(x + i)));
    for (; i < n; i++) x[i] *= a;
}
CK_TARGET_AVX2 static void scale_inplace_avx2(float *x, float a, size_t n) {
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(va, _mm256_loadu_ps(x + i)));
    for (; i < n; i++) x[i] *= a;
}
CK_TARGET_AVX512 static void leaky_relu_avx512(float *x, float slope, size_t n) {
    __m512 vs = _mm512_set1_ps(slope), zero = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
        _mm512_storeu_ps(x + i, _mm512_mask_mul_ps(v, neg, v, vs));
    }
    for (; i < n; i++) x[i] = x[i] >= 0.0f ? x[i] : slope * x[i];
}
CK_TARGET_AVX2 static void leaky_relu_avx2(float *x, float slope, size_t n) {
    __m256 vs = _mm256_set1_ps(slope), zero = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 neg = _mm256_cmp_ps(v, zero, _CMP_LT_OQ);
        _mm256_storeu_ps(x + i, _mm256_blendv_ps(v, _mm256_mul_ps(v, vs), neg));
    }
    for (; i < n; i++) x[i] = x[i] >= 0.0f ? x[i] : slope * x[i];
}
CK_TARGET_AVX512 static void channel_bias_avx512(float *x, const float *bias, size_t channels, size_t plane) {
    for (size_t c = 0; c < channels; c++) {
        __m512 vb = _mm512_set1_ps(bias[c]);
        float *p = x + c * plane;
        size_t i = 0;
        for (; i + 16 <= plane; i += 16) _mm512_storeu_ps(p + i, _mm512_add_ps(_mm512_loadu_ps(p + i), vb));
        for (; i < plane; i++) p[i] += bias[c];
    }
}
CK_TARGET_AVX2 static void channel_bias_avx2(float *x, const float *bias, size_t channels, size_t plane) {
    for (size_t c = 0; c < channels; c++) {
        __m256 vb = _mm256_set1_ps(bias[c]);
        float *p = x + c * plane;
        size_t i = 0;
        for (; i + 8 <= plane; i += 8) _mm256_storeu_ps(p + i, _mm256_add_ps(_mm256_loadu_ps(p + i), vb));
        for (; i < plane; i++) p[i] += bias[c];
    }
}
#endif

void ck_add_inplace(float *y, const float *x, size_t n) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: add_inplace_avx512(y, x, n); return;
    case CK_ISA_AVX2: add_inplace_avx2(y, x, n); return;
    default: break;
    }
#endif
    ck_add_inplace_scalar(y, x, n);
}
void ck_axpby(float *y, const float *x, float a, float b, size_t n) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: axpby_avx512(y, x, a, b, n); return;
    case CK_ISA_AVX2: axpby_avx2(y, x, a, b, n); return;
    default: break;
    }
#endif
    ck_axpby_scalar(y, x, a, b, n);
}
void ck_scale_inplace(float *x, float a, size_t n) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: scale_inplace_avx512(x, a, n); return;
    case CK_ISA_AVX2: scale_inplace_avx2(x, a, n); return;
    default: break;
    }
#endif
    ck_scale_inplace_scalar(x, a, n);
}
void ck_leaky_relu_inplace(float *x, float slope, size_t n) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: leaky_relu_avx512(x, slope, n); return;
    case CK_ISA_AVX2: leaky_relu_avx2(x, slope, n); return;
    default: break;
    }
#endif
    ck_leaky_relu_inplace_scalar(x, slope, n);
}
void ck_add_channel_bias(float *x, const float *bias, size_t channels, size_t plane) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: channel_bias_avx512(x, bias, channels, plane); return;
    case CK_ISA_AVX2: channel_bias_avx2(x, bias, channels, plane); return;
    default: break;
    }
#endif
    ck_add_channel_bias_scalar(x, bias, channels, plane);
}
