#ifndef DREAMSR_CK_CONV_H
#define DREAMSR_CK_CONV_H
/* Convolution helpers (im2col, padding, upsampling, Winograd F(4x4,3x3)) for CNNs (RRDBNet, VAE).
 *
 * Two activation layouts are used:
 *  - planar NCHW (one image): x[c][y][x];
 *  - "packed 16" (P16): channels in blocks of 16, innermost: x[c/16][y][x][c%16], channel count padded to a
 *    multiple of 16 with zeros. Winograd transforms run on P16 so each value is one 16-lane vector.
 * Kernels with SIMD variants have a `*_scalar` reference. */
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* im2col for output rows [row0, row0+rows) of a planar [channels, h, w] image:
 * col[((c*kh + ky)*kw + kx) * (rows*out_w) + (r*out_w + ox)] = src[c][oy*sh - pt + ky*dh][ox*sw - pl + kx*dw]
 * (0 outside the image), oy = row0 + r. */
void ck_im2col(float *col, const float *src, size_t channels, size_t h, size_t w,
               size_t kh, size_t kw, size_t stride_h, size_t stride_w, size_t pad_top, size_t pad_left,
               size_t dil_h, size_t dil_w, size_t out_w, size_t row0, size_t rows);

/* Nearest-neighbour 2x upsampling of `planes` planes of [h, w] elements of `elem` floats each
 * (elem = 1 for NCHW, 16 for P16): dst[p][2y+dy][2x+dx] = src[p][y][x]. */
void ck_upsample_nearest2x(float *dst, const float *src, size_t planes, size_t h, size_t w, size_t elem);
void ck_upsample_nearest2x_scalar(float *dst, const float *src, size_t planes, size_t h, size_t w, size_t elem);

/* NCHW [channels, hw] <-> P16 [ceil(channels/16), hw, 16] (padding channels are written as 0 by pack). */
void ck_pack16(float *dst, const float *src, size_t channels, size_t hw);
void ck_unpack16(float *dst, const float *src, size_t channels, size_t hw);

/* Winograd F(4x4, 3x3), stride 1, padding `pad` (0 or 1), on P16 activations: an h x w input gives an
 * oh x ow = (h + 2*pad - 2) x (w + 2*pad - 2) output.
 * Tiles: tiles_x = ceil(ow/4); tile t covers output rows 4*ty..4*ty+3, columns 4*tx..4*tx+3 (input rows from
 * 4*ty - pad).
 *
 * Weight transform: w is [cout][cin][3][3] (PyTorch / ncnn order); u is [36][cin_pad][cout_pad] (zero padded). */
void ck_wino43_weight_transform(float *u, const float *w, size_t cout, size_t cin, size_t cout_pad, size_t cin_pad);

/* Input transform of tile rows [ty0, ty0+tile_rows) for channel blocks [cb0, cb1) of a P16 image [cblocks][h][w][16]
 * (padding `pad`, 0 or 1): v[xi][t][cb*16 + lane], xi in 0..35, t = (ty-ty0)*tiles_x + tx, row stride ldv
 * (>= cin_pad) and xi stride xi_stride (>= tiles*ldv). */
void ck_wino43_input_p16(float *v, const float *src, size_t h, size_t w, size_t ty0, size_t tile_rows,
                         size_t cb0, size_t cb1, size_t ldv, size_t xi_stride, size_t pad);
void ck_wino43_input_p16_scalar(float *v, const float *src, size_t h, size_t w, size_t ty0, size_t tile_rows,
                                size_t cb0, size_t cb1, size_t ldv, size_t xi_stride, size_t pad);

/* Output transform: m[xi][t][co] (row stride ldm, xi stride xi_stride) to P16 dst [coblocks][h][w][16] (h, w: the
 * output size) for output
 * channel blocks [cb0, cb1), tile rows [ty0, ty0+tile_rows):
 *   y = conv + bias[co];  if (leaky) y = y >= 0 ? y : slope*y;
 *   if (res) y = alpha*y + beta*res[same index]   (res may equal dst). bias may be NULL. */
void ck_wino43_output_p16(float *dst, const float *m, const float *bias, size_t h, size_t w, size_t ty0,
                          size_t tile_rows, size_t cb0, size_t cb1, size_t ldm, size_t xi_stride,
                          int leaky, float slope, const float *res, float alpha, float beta);
void ck_wino43_output_p16_scalar(float *dst, const float *m, const float *bias, size_t h, size_t w, size_t ty0,
                                 size_t tile_rows, size_t cb0, size_t cb1, size_t ldm, size_t xi_stride,
                                 int leaky, float slope, const float *res, float alpha, float beta);

/* Small-N GEMM for the Winograd products: c[i][j] = sum_k a[i][k] * b[k][j] for i < m, j < n (n a multiple of 16),
 * row-major with leading dimensions lda, ldb, ldc (floats). Single-threaded. */
void ck_sgemm_n16(float *c, const float *a, const float *b, size_t m, size_t n, size_t k, size_t lda, size_t ldb,
                  size_t ldc);
void ck_sgemm_n16_scalar(float *c, const float *a, const float *b, size_t m, size_t n, size_t k, size_t lda,
                         size_t ldb, size_t ldc);

/* The same product with a P16-friendly output and a fused epilogue: column group q (columns 16q..16q+15) of row i is
 * stored at c + i*ldc + q*ldq (ldq = 16: a plain row-major C; ldq = a P16 plane: one output channel block per
 * group), after adding bias[j] (may be NULL) and, when `leaky`, y = y >= 0 ? y : slope*y. */
void ck_sgemm_n16_p16(float *c, const float *a, const float *b, const float *bias, size_t m, size_t n, size_t k,
                      size_t lda, size_t ldb, size_t ldc, size_t ldq, int leaky, float slope);
void ck_sgemm_n16_p16_scalar(float *c, const float *a, const float *b, const float *bias, size_t m, size_t n,
                             size_t k, size_t lda, size_t ldb, size_t ldc, size_t ldq, int leaky, float slope);

/* im2col of a P16 image [cblocks][h][w][16] for output pixels [p0, p0+np) (p = oy*out_w + ox), one pixel-major row
 * each: col[r*ldcol + ((ky*kw + kx)*cblocks + cb)*16 + lane] = src[cb][oy*sh - pt + ky*dh][ox*sw - pl + kx*dw][lane]
 * (0 outside the image). */
void ck_im2col_p16(float *col, const float *src, size_t cblocks, size_t h, size_t w, size_t kh, size_t kw,
                   size_t stride_h, size_t stride_w, size_t pad_top, size_t pad_left, size_t dil_h, size_t dil_w,
                   size_t out_w, size_t p0, size_t np, size_t ldcol);

/* A whole Winograd F(4x4,3x3) convolution (stride 1, padding `pad` 0 or 1) of an h x w P16 image over output tile
 * rows [ty0, ty1), single-threaded:
 * input transform, 36 ck_sgemm_n16 products with u ([36][cin_pad][cout_pad], from ck_wino43_weight_transform) and
 * the output transform (bias, LeakyReLU, residual as in ck_wino43_output_p16), in batches of `batch_tiles` tiles.
 * Scratch: v holds 36*(batch_tiles*cin_pad+16) floats, m 36*(batch_tiles*cout_pad+16) (batch_tiles >= tiles_x). */
void ck_wino43_conv_p16(float *dst, const float *src, const float *u, const float *bias, size_t h, size_t w,
                        size_t pad, size_t cin_pad, size_t cout_pad, size_t ty0, size_t ty1, size_t batch_tiles,
                        float *v, float *m, int leaky, float slope, const float *res, float alpha, float beta);

/* Winograd F(6x6, 3x3): the same interface as the F(4x4, 3x3) functions above with 6x6 output tiles
 * (tiles_x = ceil(ow/6), tile rows from input row 6*ty - pad), 8x8 transformed tiles and 64 products:
 * u is [64][cin_pad][cout_pad], v / m hold 64 slices (xi in 0..63). */
void ck_wino63_weight_transform(float *u, const float *w, size_t cout, size_t cin, size_t cout_pad, size_t cin_pad);
void ck_wino63_input_p16(float *v, const float *src, size_t h, size_t w, size_t ty0, size_t tile_rows,
                         size_t cb0, size_t cb1, size_t ldv, size_t xi_stride, size_t pad);
void ck_wino63_input_p16_scalar(float *v, const float *src, size_t h, size_t w, size_t ty0, size_t tile_rows,
                                size_t cb0, size_t cb1, size_t ldv, size_t xi_stride, size_t pad);
void ck_wino63_output_p16(float *dst, const float *m, const float *bias, size_t h, size_t w, size_t ty0,
                          size_t tile_rows, size_t cb0, size_t cb1, size_t ldm, size_t xi_stride,
                          int leaky, float slope, const float *res, float alpha, float beta);
void ck_wino63_output_p16_scalar(float *dst, const float *m, const float *bias, size_t h, size_t w, size_t ty0,
                                 size_t tile_rows, size_t cb0, size_t cb1, size_t ldm, size_t xi_stride,
                                 int leaky, float slope, const float *res, float alpha, float beta);
/* Scratch: v holds 64*(batch_tiles*cin_pad+16) floats, m 64*(batch_tiles*cout_pad+16) (batch_tiles >= tiles_x). */
void ck_wino63_conv_p16(float *dst, const float *src, const float *u, const float *bias, size_t h, size_t w,
                        size_t pad, size_t cin_pad, size_t cout_pad, size_t ty0, size_t ty1, size_t batch_tiles,
                        float *v, float *m, int leaky, float slope, const float *res, float alpha, float beta);

/* Atomically adds `v` to *p and returns the previous value (work distribution across worker threads). */
size_t ck_atomic_fetch_add(size_t *p, size_t v);

#ifdef __cplusplus
}
#endif
#endif
