#ifndef DREAMSR_CK_NORM_H
#define DREAMSR_CK_NORM_H
/* GroupNorm kernels for CNNs (FLUX VAE), split in two steps so statistics can be shared across tiles:
 *   1. ck_gn_channel_sums: per-channel sum and sum of squares over a rectangle of a planar [C, H, W] tensor
 *      (double accumulators, added to what the arrays already hold, so tiles can be combined);
 *   2. ck_gn_apply: y = x * scale[c] + shift[c] (the folded mean / rstd / affine), optionally followed by SiLU.
 * Each kernel has a `*_scalar` reference; SIMD variants are tested against it. */
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* For c in [0, channels): sum[c] += sum over rows [y0, y0+rows), cols [x0, x0+cols) of x[c][y][x];
 * sumsq[c] += same of x^2. x is planar [channels, h, w] with w = row stride. */
void ck_gn_channel_sums(const float *x, size_t channels, size_t h, size_t w, size_t y0, size_t rows, size_t x0,
                        size_t cols, double *sum, double *sumsq);
void ck_gn_channel_sums_scalar(const float *x, size_t channels, size_t h, size_t w, size_t y0, size_t rows,
                               size_t x0, size_t cols, double *sum, double *sumsq);

/* y[c][i] = x[c][i] * scale[c] + shift[c], then y = y * sigmoid(y) when silu != 0. x and y may alias. */
void ck_gn_apply(float *y, const float *x, size_t channels, size_t plane, const float *scale, const float *shift,
                 int silu);
void ck_gn_apply_scalar(float *y, const float *x, size_t channels, size_t plane, const float *scale,
                        const float *shift, int silu);

#ifdef __cplusplus
}
#endif
#endif
