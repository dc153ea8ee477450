/* GroupNorm kernels (statistics and apply with optional fused SiLU): scalar references and AVX2 / AVX-512 variants. */
#include "internal.h"
#include <math.h>

void ck_gn_channel_sums_scalar(const float *x, size_t channels, size_t h, size_t w, size_t y0, size_t rows,
                               size_t x0, size_t cols, double *sum, double *sumsq) {
    (void)h;
    for (size_t c = 0; c < channels; c++) {
        double s = 0, q = 0;
        for (size_t y = y0; y < y0 + rows; y++) {
            const float *p = x + (c * h + y) * w + x0;
            for (size_t i = 0; i < cols; i++) {
                double v = p[i];
                s += v;
                q += v * v;
            }
        }
        sum[c] += s;
        sumsq[c] += q;
    }
}

static inline float silu_scalar(float v) { return v / (1.0f + expf(-v)); }

void ck_gn_apply_scalar(float *y, const float *x, size_t channels, size_t plane, const float *scale,
                        const float *shift, int silu) {
    for (size_t c = 0; c < channels; c++) {
        const float a = scale[c], b = shift[c];
        const float *src = x + c * plane;
        float *dst = y + c * plane;
        if (silu) {
            for (size_t i = 0; i < plane; i++) dst[i] = silu_scalar(src[i] * a + b);
        } else {
            for (size_t i = 0; i < plane; i++) dst[i] = src[i] * a + b;
        }
    }
}

#if CK_X86
/* Per row: float vector partial sums (row lengths are at most a few thousand), then added to double accumulators. */
CK_TARGET_AVX512 static void gn_sums_avx512(const float *x, size_t channels, size_t h, size_t w, size_t y0,
                                            size_t rows, size_t x0, size_t cols, double *sum, double *sumsq) {
    for (size_t c = 0; c < channels; c++) {
        double s = 0, q = 0;
        for (size_t y = y0; y < y0 + rows; y++) {
            const float *p = x + (c * h + y) * w + x0;
            __m512 vs = _mm512_setzero_ps(), vq = _mm512_setzero_ps();
            size_t i = 0;
            for (; i + 16 <= cols; i += 16) {
                __m512 v = _mm512_loadu_ps(p + i);
                vs = _mm512_add_ps(vs, v);
                vq = _mm512_fmadd_ps(v, v, vq);
            }
            if (i < cols) {
                __mmask16 m = (__mmask16)((1u << (cols - i)) - 1u);
                __m512 v = _mm512_maskz_loadu_ps(m, p + i);
                vs = _mm512_add_ps(vs, v);
                vq = _mm512_fmadd_ps(v, v, vq);
            }
            /* reduce in double to keep the per-row rounding small */
            __m512d s0 = _mm512_cvtps_pd(_mm512_castps512_ps256(vs));
            __m512d s1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(vs), 1)));
            __m512d q0 = _mm512_cvtps_pd(_mm512_castps512_ps256(vq));
            __m512d q1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(vq), 1)));
            s += _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
            q += _mm512_reduce_add_pd(_mm512_add_pd(q0, q1));
        }
        sum[c] += s;
        sumsq[c] += q;
    }
}

CK_TARGET_AVX2 static void gn_sums_avx2(const float *x, size_t channels, size_t h, size_t w, size_t y0, size_t rows,
                                        size_t x0, size_t cols, double *sum, double *sumsq) {
    for (size_t c = 0; c < channels; c++) {
        double s = 0, q = 0;
        for (size_t y = y0; y < y0 + rows; y++) {
            const float *p = x + (c * h + y) * w + x0;
            __m256 vs = _mm256_setzero_ps(), vq = _mm256_setzero_ps();
            size_t i = 0;
            for (; i + 8 <= cols; i += 8) {
                __m256 v = _mm256_loadu_ps(p + i);
                vs = _mm256_add_ps(vs, v);
                vq = _mm256_fmadd_ps(v, v, vq);
            }
            float ts[8], tq[8];
            _mm256_storeu_ps(ts, vs);
            _mm256_storeu_ps(tq, vq);
            for (int k = 0; k < 8; k++) { s += ts[k]; q += tq[k]; }
            for (; i < cols; i++) { double v = p[i]; s += v; q += v * v; }
        }
        sum[c] += s;
        sumsq[c] += q;
    }
}

/* exp(x) for x <= 0 range-reduced polynomial (Cephes expf coefficients), |rel err| ~ 2 ulp; inputs clamped. */
CK_TARGET_AVX512 static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f)), _mm512_set1_ps(-87.3365478515625f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

CK_TARGET_AVX2 static inline __m256 exp256(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)), _mm256_set1_ps(-87.3365478515625f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n via the exponent bits (n in [-127, 128) after the clamp) */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

CK_TARGET_AVX512 static void gn_apply_avx512(float *y, const float *x, size_t channels, size_t plane,
                                             const float *scale, const float *shift, int silu) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (size_t c = 0; c < channels; c++) {
        const __m512 a = _mm512_set1_ps(scale[c]), b = _mm512_set1_ps(shift[c]);
        const float *src = x + c * plane;
        float *dst = y + c * plane;
        size_t i = 0;
        for (; i < plane; i += 16) {
            __mmask16 m = plane - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (plane - i)) - 1u);
            __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, src + i), a, b);
            if (silu) v = _mm512_div_ps(v, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
            _mm512_mask_storeu_ps(dst + i, m, v);
        }
    }
}

CK_TARGET_AVX2 static void gn_apply_avx2(float *y, const float *x, size_t channels, size_t plane, const float *scale,
                                         const float *shift, int silu) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (size_t c = 0; c < channels; c++) {
        const __m256 a = _mm256_set1_ps(scale[c]), b = _mm256_set1_ps(shift[c]);
        const float *src = x + c * plane;
        float *dst = y + c * plane;
        size_t i = 0;
        for (; i + 8 <= plane; i += 8) {
            __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(src + i), a, b);
            if (silu) v = _mm256_div_ps(v, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), v))));
            _mm256_storeu_ps(dst + i, v);
        }
        for (; i < plane; i++) {
            float v = src[i] * scale[c] + shift[c];
            dst[i] = silu ? silu_scalar(v) : v;
        }
    }
}
#endif

void ck_gn_channel_sums(const float *x, size_t channels, size_t h, size_t w, size_t y0, size_t rows, size_t x0,
                        size_t cols, double *sum, double *sumsq) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: gn_sums_avx512(x, channels, h, w, y0, rows, x0, cols, sum, sumsq); return;
    case CK_ISA_AVX2: gn_sums_avx2(x, channels, h, w, y0, rows, x0, cols, sum, sumsq); return;
    default: break;
    }
#endif
    ck_gn_channel_sums_scalar(x, channels, h, w, y0, rows, x0, cols, sum, sumsq);
}

void ck_gn_apply(float *y, const float *x, size_t channels, size_t plane, const float *scale, const float *shift,
                 int silu) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: gn_apply_avx512(y, x, channels, plane, scale, shift, silu); return;
    case CK_ISA_AVX2: gn_apply_avx2(y, x, channels, plane, scale, shift, silu); return;
    default: break;
    }
#endif
    ck_gn_apply_scalar(y, x, channels, plane, scale, shift, silu);
}
