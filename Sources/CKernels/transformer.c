/* Transformer kernels: LayerNorm + modulation, per-head RMSNorm, RoPE, GELU-tanh, SiLU, softmax, gated residual.
 * Scalar references first, then AVX2 / AVX-512 variants, then the dispatchers. */
#include "internal.h"
#include <math.h>
#include <string.h>

#define CK_SQRT_2_OVER_PI 0.7978845608028654f
#define CK_GELU_C 0.044715f

/* ---------------------------------------------------------------------------------------------------------------- */
/* Scalar references                                                                                                */

void ck_layernorm_modulate_scalar(float *y, size_t y_stride, const float *x, size_t x_stride, size_t rows,
                                  size_t dim, const float *scale, const float *shift, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * x_stride;
        float *yr = y + r * y_stride;
        double sum = 0;
        for (size_t i = 0; i < dim; i++) sum += xr[i];
        float mean = (float)(sum / (double)dim);
        double var = 0;
        for (size_t i = 0; i < dim; i++) {
            double d = (double)xr[i] - mean;
            var += d * d;
        }
        float rstd = 1.0f / sqrtf((float)(var / (double)dim) + eps);
        for (size_t i = 0; i < dim; i++) {
            float t = (xr[i] - mean) * rstd;
            float s = scale ? scale[i] : 0.0f;
            float b = shift ? shift[i] : 0.0f;
            yr[i] = t * (1.0f + s) + b;
        }
    }
}

void ck_rmsnorm_heads_scalar(float *x, size_t stride, size_t rows, size_t heads, size_t head_dim,
                             const float *weight, float eps) {
    for (size_t r = 0; r < rows; r++) {
        for (size_t h = 0; h < heads; h++) {
            float *v = x + r * stride + h * head_dim;
            float ss = 0;
            for (size_t d = 0; d < head_dim; d++) ss += v[d] * v[d];
            float inv = 1.0f / sqrtf(ss / (float)head_dim + eps);
            for (size_t d = 0; d < head_dim; d++) v[d] = v[d] * inv * (weight ? weight[d] : 1.0f);
        }
    }
}

void ck_rope_interleaved_scalar(float *x, size_t stride, size_t rows, size_t heads, size_t head_dim,
                                const float *cos_t, const float *sin_t) {
    size_t pairs = head_dim / 2;
    for (size_t r = 0; r < rows; r++) {
        const float *c = cos_t + r * pairs;
        const float *s = sin_t + r * pairs;
        for (size_t h = 0; h < heads; h++) {
            float *v = x + r * stride + h * head_dim;
            for (size_t p = 0; p < pairs; p++) {
                float a = v[2 * p], b = v[2 * p + 1];
                v[2 * p] = a * c[p] - b * s[p];
                v[2 * p + 1] = a * s[p] + b * c[p];
            }
        }
    }
}

void ck_gelu_tanh_inplace_scalar(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(CK_SQRT_2_OVER_PI * (v + CK_GELU_C * v * v * v)));
    }
}
void ck_silu_inplace_scalar(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}
void ck_quick_gelu_inplace_scalar(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

void ck_softmax_rows_scalar(float *x, size_t stride, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *v = x + r * stride;
        float m = -INFINITY;
        for (size_t i = 0; i < cols; i++) m = v[i] > m ? v[i] : m;
        float sum = 0;
        for (size_t i = 0; i < cols; i++) {
            v[i] = expf(v[i] - m);
            sum += v[i];
        }
        float inv = 1.0f / sum;
        for (size_t i = 0; i < cols; i++) v[i] *= inv;
    }
}

void ck_broadcast_rows(float *y, size_t stride, const float *bias, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) memcpy(y + r * stride, bias, cols * sizeof(float));
}

void ck_gated_add_scalar(float *y, size_t y_stride, const float *x, size_t x_stride, const float *gate,
                         size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *yr = y + r * y_stride;
        const float *xr = x + r * x_stride;
        for (size_t c = 0; c < cols; c++) yr[c] += (gate ? gate[c] : 1.0f) * xr[c];
    }
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* SIMD variants                                                                                                    */
#if CK_X86

/* exp(x) for float lanes (Cephes polynomial, ~1-2 ulp), inputs clamped to the finite range. */
CK_TARGET_AVX512 static inline __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.33654f)), _mm512_set1_ps(88.37626f));
    __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(5.0000001201E-1f));
    __m512 xx = _mm512_mul_ps(x, x);
    __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, xx, x), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, fx);
}

CK_TARGET_AVX2 static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.37626f));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(5.0000001201E-1f));
    __m256 xx = _mm256_mul_ps(x, x);
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, xx, x), _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* x * sigmoid(k * arg) computed as x / (1 + exp(-k*arg)). */
CK_TARGET_AVX512 static void gelu_tanh_avx512(float *x, size_t n) {
    const __m512 c0 = _mm512_set1_ps(-2.0f * CK_SQRT_2_OVER_PI), c1 = _mm512_set1_ps(CK_GELU_C),
                 one = _mm512_set1_ps(1.0f);
    size_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        __m512 u = _mm512_fmadd_ps(_mm512_mul_ps(c1, v), _mm512_mul_ps(v, v), v);
        __m512 e = exp512(_mm512_mul_ps(c0, u));
        _mm512_mask_storeu_ps(x + i, m, _mm512_div_ps(v, _mm512_add_ps(one, e)));
    }
}
CK_TARGET_AVX2 static void gelu_tanh_avx2(float *x, size_t n) {
    const __m256 c0 = _mm256_set1_ps(-2.0f * CK_SQRT_2_OVER_PI), c1 = _mm256_set1_ps(CK_GELU_C),
                 one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 u = _mm256_fmadd_ps(_mm256_mul_ps(c1, v), _mm256_mul_ps(v, v), v);
        __m256 e = exp256(_mm256_mul_ps(c0, u));
        _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
    ck_gelu_tanh_inplace_scalar(x + i, n - i);
}
CK_TARGET_AVX512 static void sigmoid_mul_avx512(float *x, size_t n, float k) {
    const __m512 nk = _mm512_set1_ps(-k), one = _mm512_set1_ps(1.0f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        __m512 e = exp512(_mm512_mul_ps(nk, v));
        _mm512_mask_storeu_ps(x + i, m, _mm512_div_ps(v, _mm512_add_ps(one, e)));
    }
}
CK_TARGET_AVX2 static void sigmoid_mul_avx2(float *x, size_t n, float k) {
    const __m256 nk = _mm256_set1_ps(-k), one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = exp256(_mm256_mul_ps(nk, v));
        _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
    for (; i < n; i++) x[i] = x[i] / (1.0f + expf(-k * x[i]));
}

CK_TARGET_AVX512 static void softmax_rows_avx512(float *x, size_t stride, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *v = x + r * stride;
        __m512 vm = _mm512_set1_ps(-INFINITY);
        size_t i = 0;
        for (; i + 16 <= cols; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(v + i));
        float m = _mm512_reduce_max_ps(vm);
        for (; i < cols; i++) m = v[i] > m ? v[i] : m;
        __m512 bm = _mm512_set1_ps(m), acc = _mm512_setzero_ps();
        for (i = 0; i < cols; i += 16) {
            __mmask16 k = cols - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cols - i)) - 1u);
            __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, v + i), bm));
            e = _mm512_maskz_mov_ps(k, e);
            acc = _mm512_add_ps(acc, e);
            _mm512_mask_storeu_ps(v + i, k, e);
        }
        __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(acc));
        for (i = 0; i < cols; i += 16) {
            __mmask16 k = cols - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cols - i)) - 1u);
            _mm512_mask_storeu_ps(v + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, v + i), inv));
        }
    }
}
CK_TARGET_AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
CK_TARGET_AVX2 static inline float hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
CK_TARGET_AVX2 static void softmax_rows_avx2(float *x, size_t stride, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *v = x + r * stride;
        __m256 vm = _mm256_set1_ps(-INFINITY);
        size_t i = 0;
        for (; i + 8 <= cols; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(v + i));
        float m = hmax256(vm);
        for (size_t j = i; j < cols; j++) m = v[j] > m ? v[j] : m;
        __m256 bm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
        for (i = 0; i + 8 <= cols; i += 8) {
            __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(v + i), bm));
            acc = _mm256_add_ps(acc, e);
            _mm256_storeu_ps(v + i, e);
        }
        float sum = hsum256(acc);
        for (size_t j = i; j < cols; j++) {
            v[j] = expf(v[j] - m);
            sum += v[j];
        }
        __m256 inv = _mm256_set1_ps(1.0f / sum);
        for (i = 0; i + 8 <= cols; i += 8) _mm256_storeu_ps(v + i, _mm256_mul_ps(_mm256_loadu_ps(v + i), inv));
        for (size_t j = i; j < cols; j++) v[j] *= 1.0f / sum;
    }
}

CK_TARGET_AVX512 static void layernorm_modulate_avx512(float *y, size_t y_stride, const float *x, size_t x_stride,
                                                       size_t rows, size_t dim, const float *scale,
                                                       const float *shift, float eps) {
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * x_stride;
        float *yr = y + r * y_stride;
        __m512 acc = zero;
        for (size_t i = 0; i < dim; i += 16) {
            __mmask16 k = dim - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (dim - i)) - 1u);
            acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(k, xr + i));
        }
        float mean = _mm512_reduce_add_ps(acc) / (float)dim;
        __m512 bm = _mm512_set1_ps(mean);
        acc = zero;
        for (size_t i = 0; i < dim; i += 16) {
            __mmask16 k = dim - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (dim - i)) - 1u);
            __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, xr + i), bm);
            acc = _mm512_fmadd_ps(d, d, acc);
        }
        float rstd = 1.0f / sqrtf(_mm512_reduce_add_ps(acc) / (float)dim + eps);
        __m512 br = _mm512_set1_ps(rstd);
        for (size_t i = 0; i < dim; i += 16) {
            __mmask16 k = dim - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (dim - i)) - 1u);
            __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + i), bm), br);
            __m512 s = scale ? _mm512_add_ps(one, _mm512_maskz_loadu_ps(k, scale + i)) : one;
            __m512 b = shift ? _mm512_maskz_loadu_ps(k, shift + i) : zero;
            _mm512_mask_storeu_ps(yr + i, k, _mm512_fmadd_ps(t, s, b));
        }
    }
}

CK_TARGET_AVX512 static void gated_add_avx512(float *y, size_t y_stride, const float *x, size_t x_stride,
                                              const float *gate, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *yr = y + r * y_stride;
        const float *xr = x + r * x_stride;
        for (size_t c = 0; c < cols; c += 16) {
            __mmask16 k = cols - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cols - c)) - 1u);
            __m512 g = gate ? _mm512_maskz_loadu_ps(k, gate + c) : _mm512_set1_ps(1.0f);
            _mm512_mask_storeu_ps(yr + c, k,
                                  _mm512_fmadd_ps(g, _mm512_maskz_loadu_ps(k, xr + c), _mm512_maskz_loadu_ps(k, yr + c)));
        }
    }
}
CK_TARGET_AVX2 static void gated_add_avx2(float *y, size_t y_stride, const float *x, size_t x_stride,
                                          const float *gate, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *yr = y + r * y_stride;
        const float *xr = x + r * x_stride;
        size_t c = 0;
        for (; c + 8 <= cols; c += 8) {
            __m256 g = gate ? _mm256_loadu_ps(gate + c) : _mm256_set1_ps(1.0f);
            _mm256_storeu_ps(yr + c, _mm256_fmadd_ps(g, _mm256_loadu_ps(xr + c), _mm256_loadu_ps(yr + c)));
        }
        for (; c < cols; c++) yr[c] += (gate ? gate[c] : 1.0f) * xr[c];
    }
}
#endif

/* ---------------------------------------------------------------------------------------------------------------- */
/* Dispatchers                                                                                                      */

void ck_layernorm_modulate(float *y, size_t y_stride, const float *x, size_t x_stride, size_t rows, size_t dim,
                           const float *scale, const float *shift, float eps) {
#if CK_X86
    if (ck_isa_active() == CK_ISA_AVX512) {
        layernorm_modulate_avx512(y, y_stride, x, x_stride, rows, dim, scale, shift, eps);
        return;
    }
#endif
    ck_layernorm_modulate_scalar(y, y_stride, x, x_stride, rows, dim, scale, shift, eps);
}

/* RMSNorm and RoPE touch each q/k element once per forward (a small fraction of the block's time); -O3 auto-
 * vectorisation of the scalar loops is sufficient, so the dispatchers share the reference. */
void ck_rmsnorm_heads(float *x, size_t stride, size_t rows, size_t heads, size_t head_dim, const float *weight,
                      float eps) {
    ck_rmsnorm_heads_scalar(x, stride, rows, heads, head_dim, weight, eps);
}
void ck_rope_interleaved(float *x, size_t stride, size_t rows, size_t heads, size_t head_dim, const float *cos_t,
                         const float *sin_t) {
    ck_rope_interleaved_scalar(x, stride, rows, heads, head_dim, cos_t, sin_t);
}

void ck_gelu_tanh_inplace(float *x, size_t n) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: gelu_tanh_avx512(x, n); return;
    case CK_ISA_AVX2: gelu_tanh_avx2(x, n); return;
    default: break;
    }
#endif
    ck_gelu_tanh_inplace_scalar(x, n);
}
void ck_silu_inplace(float *x, size_t n) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: sigmoid_mul_avx512(x, n, 1.0f); return;
    case CK_ISA_AVX2: sigmoid_mul_avx2(x, n, 1.0f); return;
    default: break;
    }
#endif
    ck_silu_inplace_scalar(x, n);
}
void ck_quick_gelu_inplace(float *x, size_t n) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: sigmoid_mul_avx512(x, n, 1.702f); return;
    case CK_ISA_AVX2: sigmoid_mul_avx2(x, n, 1.702f); return;
    default: break;
    }
#endif
    ck_quick_gelu_inplace_scalar(x, n);
}
void ck_softmax_rows(float *x, size_t stride, size_t rows, size_t cols) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: softmax_rows_avx512(x, stride, rows, cols); return;
    case CK_ISA_AVX2: softmax_rows_avx2(x, stride, rows, cols); return;
    default: break;
    }
#endif
    ck_softmax_rows_scalar(x, stride, rows, cols);
}
void ck_gated_add(float *y, size_t y_stride, const float *x, size_t x_stride, const float *gate, size_t rows,
                  size_t cols) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: gated_add_avx512(y, y_stride, x, x_stride, gate, rows, cols); return;
    case CK_ISA_AVX2: gated_add_avx2(y, y_stride, x, x_stride, gate, rows, cols); return;
    default: break;
    }
#endif
    ck_gated_add_scalar(y, y_stride, x, x_stride, gate, rows, cols);
}
