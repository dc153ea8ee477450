#ifndef DREAMSR_CK_TRANSFORMER_H
#define DREAMSR_CK_TRANSFORMER_H
/* Transformer kernels (norms, activations, RoPE, softmax/attention) for FLUX, T5, CLIP.
 * Each dispatched kernel has a `*_scalar` reference; SIMD variants are tested against it. Row-major data; `stride`
 * arguments are in floats between consecutive rows. */
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* y[r,:] = LN(x[r,:]) * (1 + scale) + shift, LN without affine (population variance, eps inside the sqrt).
 * scale / shift are [dim] vectors or NULL (plain LayerNorm). x and y may alias. */
void ck_layernorm_modulate(float *y, size_t y_stride, const float *x, size_t x_stride, size_t rows, size_t dim,
                           const float *scale, const float *shift, float eps);
void ck_layernorm_modulate_scalar(float *y, size_t y_stride, const float *x, size_t x_stride, size_t rows,
                                  size_t dim, const float *scale, const float *shift, float eps);

/* In place RMSNorm of each head vector: x[r, h*head_dim + d] = x * rsqrt(mean_d(x^2) + eps) * weight[d].
 * weight may be NULL. */
void ck_rmsnorm_heads(float *x, size_t stride, size_t rows, size_t heads, size_t head_dim, const float *weight,
                      float eps);
void ck_rmsnorm_heads_scalar(float *x, size_t stride, size_t rows, size_t heads, size_t head_dim,
                             const float *weight, float eps);

/* In place rotary embedding with interleaved pairs (FLUX / diffusers repeat_interleave_real):
 * for each row r, head h, pair p: (a, b) = x[.., 2p], x[.., 2p+1];
 * x[2p] = a*cos[r,p] - b*sin[r,p]; x[2p+1] = a*sin[r,p] + b*cos[r,p]. cos/sin are [rows, head_dim/2]. */
void ck_rope_interleaved(float *x, size_t stride, size_t rows, size_t heads, size_t head_dim, const float *cos_t,
                         const float *sin_t);
void ck_rope_interleaved_scalar(float *x, size_t stride, size_t rows, size_t heads, size_t head_dim,
                                const float *cos_t, const float *sin_t);

/* In place activations over n contiguous floats. */
/* GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
void ck_gelu_tanh_inplace(float *x, size_t n);
void ck_gelu_tanh_inplace_scalar(float *x, size_t n);
/* SiLU: x * sigmoid(x). */
void ck_silu_inplace(float *x, size_t n);
void ck_silu_inplace_scalar(float *x, size_t n);
/* Quick GELU (CLIP): x * sigmoid(1.702 x). */
void ck_quick_gelu_inplace(float *x, size_t n);
void ck_quick_gelu_inplace_scalar(float *x, size_t n);

/* Row-wise softmax in place: x[r, 0..cols) with row stride `stride`. */
void ck_softmax_rows(float *x, size_t stride, size_t rows, size_t cols);
void ck_softmax_rows_scalar(float *x, size_t stride, size_t rows, size_t cols);

/* y[r,c] = bias[c] for all rows (broadcast, to seed a GEMM with beta = 1). */
void ck_broadcast_rows(float *y, size_t stride, const float *bias, size_t rows, size_t cols);
/* y[r,c] += gate[c] * x[r,c] (gated residual). gate may be NULL (plain add). */
void ck_gated_add(float *y, size_t y_stride, const float *x, size_t x_stride, const float *gate, size_t rows,
                  size_t cols);
void ck_gated_add_scalar(float *y, size_t y_stride, const float *x, size_t x_stride, const float *gate,
                         size_t rows, size_t cols);

#ifdef __cplusplus
}
#endif
#endif
