/* Convolution kernels: im2col, nearest upsampling, P16 packing and Winograd F(4x4,3x3) transforms.
 *
 * The Winograd transforms and the upsampler are written once as always-inline bodies over 16-lane arrays and
 * instantiated three times: the `*_scalar` reference (baseline ISA) and AVX2 / AVX-512 variants (the compiler
 * vectorises the 16-lane loops for the variant's ISA). Matrices follow Lavin & Gray, "Fast Algorithms for
 * Convolutional Neural Networks" (F(4x4,3x3)). */
#include "internal.h"
#include <string.h>

#define CK_INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------- im2col (general) */

void ck_im2col(float *col, const float *src, size_t channels, size_t h, size_t w,
               size_t kh, size_t kw, size_t stride_h, size_t stride_w, size_t pad_top, size_t pad_left,
               size_t dil_h, size_t dil_w, size_t out_w, size_t row0, size_t rows) {
    const size_t n = rows * out_w;
    for (size_t c = 0; c < channels; c++) {
        const float *plane = src + c * h * w;
        for (size_t ky = 0; ky < kh; ky++) {
            for (size_t kx = 0; kx < kw; kx++) {
                float *dst = col + ((c * kh + ky) * kw + kx) * n;
                const long xoff = (long)(kx * dil_w) - (long)pad_left;
                for (size_t r = 0; r < rows; r++) {
                    const long iy = (long)((row0 + r) * stride_h + ky * dil_h) - (long)pad_top;
                    float *d = dst + r * out_w;
                    if (iy < 0 || iy >= (long)h) {
                        memset(d, 0, out_w * sizeof(float));
                        continue;
                    }
                    const float *srow = plane + (size_t)iy * w;
                    if (stride_w == 1) {
                        /* valid ox range: 0 <= ox + xoff < w */
                        long lo = -xoff < 0 ? 0 : -xoff;
                        long hi = (long)w - xoff; /* exclusive */
                        if (hi > (long)out_w) hi = (long)out_w;
                        if (lo > (long)out_w) lo = (long)out_w;
                        if (hi < lo) hi = lo;
                        if (lo > 0) memset(d, 0, (size_t)lo * sizeof(float));
                        if (hi > lo) memcpy(d + lo, srow + lo + xoff, (size_t)(hi - lo) * sizeof(float));
                        if ((long)out_w > hi) memset(d + hi, 0, (size_t)((long)out_w - hi) * sizeof(float));
                    } else {
                        for (size_t ox = 0; ox < out_w; ox++) {
                            long ix = (long)(ox * stride_w) + xoff;
                            d[ox] = (ix >= 0 && ix < (long)w) ? srow[ix] : 0.0f;
                        }
                    }
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- nearest 2x upsampling */

CK_INLINE void upsample2x_body(float *restrict dst, const float *restrict src, size_t planes, size_t h, size_t w,
                               size_t elem) {
    const size_t ow = 2 * w;
    for (size_t p = 0; p < planes; p++) {
        const float *s = src + p * h * w * elem;
        float *d = dst + p * 4 * h * w * elem;
        for (size_t y = 0; y < h; y++) {
            float *r0 = d + (2 * y) * ow * elem;
            const float *sr = s + y * w * elem;
            if (elem == 16) {
                for (size_t x = 0; x < w; x++)
                    for (size_t l = 0; l < 16; l++) {
                        float v = sr[x * 16 + l];
                        r0[(2 * x) * 16 + l] = v;
                        r0[(2 * x + 1) * 16 + l] = v;
                    }
            } else {
                for (size_t x = 0; x < w; x++)
                    for (size_t l = 0; l < elem; l++) {
                        float v = sr[x * elem + l];
                        r0[(2 * x) * elem + l] = v;
                        r0[(2 * x + 1) * elem + l] = v;
                    }
            }
            memcpy(r0 + ow * elem, r0, ow * elem * sizeof(float));
        }
    }
}

void ck_upsample_nearest2x_scalar(float *dst, const float *src, size_t planes, size_t h, size_t w, size_t elem) {
    upsample2x_body(dst, src, planes, h, w, elem);
}

/* ---------------------------------------------------------------- P16 packing */

void ck_pack16(float *dst, const float *src, size_t channels, size_t hw) {
    const size_t blocks = (channels + 15) / 16;
    for (size_t b = 0; b < blocks; b++) {
        float *d = dst + b * hw * 16;
        for (size_t l = 0; l < 16; l++) {
            size_t c = b * 16 + l;
            if (c < channels) {
                const float *s = src + c * hw;
                for (size_t i = 0; i < hw; i++) d[i * 16 + l] = s[i];
            } else {
                for (size_t i = 0; i < hw; i++) d[i * 16 + l] = 0.0f;
            }
        }
    }
}

void ck_unpack16(float *dst, const float *src, size_t channels, size_t hw) {
    for (size_t c = 0; c < channels; c++) {
        const float *s = src + (c / 16) * hw * 16 + (c % 16);
        float *d = dst + c * hw;
        for (size_t i = 0; i < hw; i++) d[i] = s[i * 16];
    }
}

/* ---------------------------------------------------------------- Winograd F(4x4,3x3) */

static const float G43[6][3] = {
    {1.0f / 4, 0, 0},
    {-1.0f / 6, -1.0f / 6, -1.0f / 6},
    {-1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6},
    {1.0f / 24, -1.0f / 12, 1.0f / 6},
    {0, 0, 1},
};

void ck_wino43_weight_transform(float *u, const float *w, size_t cout, size_t cin, size_t cout_pad, size_t cin_pad) {
    memset(u, 0, 36 * cin_pad * cout_pad * sizeof(float));
    for (size_t co = 0; co < cout; co++) {
        for (size_t ci = 0; ci < cin; ci++) {
            const float *g = w + (co * cin + ci) * 9;
            double tmp[6][3]; /* G g */
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 3; j++)
                    tmp[i][j] = (double)G43[i][0] * g[0 * 3 + j] + (double)G43[i][1] * g[1 * 3 + j] +
                                (double)G43[i][2] * g[2 * 3 + j];
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 6; j++) {
                    double v = tmp[i][0] * G43[j][0] + tmp[i][1] * G43[j][1] + tmp[i][2] * G43[j][2];
                    u[((size_t)(i * 6 + j) * cin_pad + ci) * cout_pad + co] = (float)v;
                }
        }
    }
}

/* B^T applied to 6 vectors of 16 lanes (in -> out), strides in floats. */
CK_INLINE void bt6(float out[6][16], float in[6][16]) {
    for (int l = 0; l < 16; l++) {
        float d0 = in[0][l], d1 = in[1][l], d2 = in[2][l], d3 = in[3][l], d4 = in[4][l], d5 = in[5][l];
        out[0][l] = 4.0f * d0 - 5.0f * d2 + d4;
        out[1][l] = -4.0f * (d1 + d2) + d3 + d4;
        out[2][l] = 4.0f * (d1 - d2) - d3 + d4;
        out[3][l] = 2.0f * (d3 - d1) - d2 + d4;
        out[4][l] = 2.0f * (d1 - d3) - d2 + d4;
        out[5][l] = 4.0f * d1 - 5.0f * d3 + d5;
    }
}

CK_INLINE void wino_in_body(float *restrict v, const float *restrict src, size_t h, size_t w, size_t ty0,
                            size_t tile_rows, size_t cb0, size_t cb1, size_t ldv, size_t xs) {
    const size_t tiles_x = (w + 3) / 4;
    const size_t plane = h * w * 16;
    for (size_t ty = ty0; ty < ty0 + tile_rows; ty++) {
        for (size_t tx = 0; tx < tiles_x; tx++) {
            const long y0 = (long)ty * 4 - 1, x0 = (long)tx * 4 - 1;
            const int interior = y0 >= 0 && x0 >= 0 && y0 + 6 <= (long)h && x0 + 6 <= (long)w;
            const size_t tt = (ty - ty0) * tiles_x + tx;
            for (size_t cb = cb0; cb < cb1; cb++) {
                const float *s = src + cb * plane;
                float d[6][6][16];
                if (interior) {
                    for (int i = 0; i < 6; i++) {
                        const float *row = s + ((size_t)(y0 + i) * w + (size_t)x0) * 16;
                        for (int j = 0; j < 6; j++)
                            for (int l = 0; l < 16; l++) d[i][j][l] = row[j * 16 + l];
                    }
                } else {
                    for (int i = 0; i < 6; i++) {
                        long yy = y0 + i;
                        for (int j = 0; j < 6; j++) {
                            long xx = x0 + j;
                            if (yy >= 0 && yy < (long)h && xx >= 0 && xx < (long)w) {
                                const float *p = s + ((size_t)yy * w + (size_t)xx) * 16;
                                for (int l = 0; l < 16; l++) d[i][j][l] = p[l];
                            } else {
                                for (int l = 0; l < 16; l++) d[i][j][l] = 0.0f;
                            }
                        }
                    }
                }
                /* columns: t[.][j] = B^T d[.][j] ; rows: o[i][.] = B^T t[i][.] */
                float t[6][6][16];
                for (int j = 0; j < 6; j++) {
                    float col[6][16], res[6][16];
                    for (int i = 0; i < 6; i++)
                        for (int l = 0; l < 16; l++) col[i][l] = d[i][j][l];
                    bt6(res, col);
                    for (int i = 0; i < 6; i++)
                        for (int l = 0; l < 16; l++) t[i][j][l] = res[i][l];
                }
                float *vp = v + tt * ldv + cb * 16;
                for (int i = 0; i < 6; i++) {
                    float res[6][16];
                    bt6(res, t[i]);
                    for (int j = 0; j < 6; j++) {
                        float *o = vp + (size_t)(i * 6 + j) * xs;
                        for (int l = 0; l < 16; l++) o[l] = res[j][l];
                    }
                }
            }
        }
    }
}

/* A^T applied to 6 vectors -> 4 vectors. */
CK_INLINE void at6(float out[4][16], float in[6][16]) {
    for (int l = 0; l < 16; l++) {
        float m0 = in[0][l], m1 = in[1][l], m2 = in[2][l], m3 = in[3][l], m4 = in[4][l], m5 = in[5][l];
        float a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
        out[0][l] = m0 + a + c;
        out[1][l] = b + 2.0f * d;
        out[2][l] = a + 4.0f * c;
        out[3][l] = b + 8.0f * d + m5;
    }
}

CK_INLINE void wino_out_body(float *restrict dst, const float *restrict m, const float *restrict bias, size_t h,
                             size_t w, size_t ty0, size_t tile_rows, size_t cb0, size_t cb1, size_t ldm, size_t xs,
                             int leaky, float slope, const float *res, float alpha, float beta) {
    const size_t tiles_x = (w + 3) / 4;
    const size_t plane = h * w * 16;
    for (size_t ty = ty0; ty < ty0 + tile_rows; ty++) {
        for (size_t tx = 0; tx < tiles_x; tx++) {
            const size_t tt = (ty - ty0) * tiles_x + tx;
            const size_t oy0 = ty * 4, ox0 = tx * 4;
            const size_t ny = h - oy0 < 4 ? h - oy0 : 4, nx = w - ox0 < 4 ? w - ox0 : 4;
            for (size_t cb = cb0; cb < cb1; cb++) {
                const float *mp = m + tt * ldm + cb * 16;
                float t[4][6][16];
                for (int j = 0; j < 6; j++) {
                    float col[6][16], r4[4][16];
                    for (int i = 0; i < 6; i++) {
                        const float *q = mp + (size_t)(i * 6 + j) * xs;
                        for (int l = 0; l < 16; l++) col[i][l] = q[l];
                    }
                    at6(r4, col);
                    for (int i = 0; i < 4; i++)
                        for (int l = 0; l < 16; l++) t[i][j][l] = r4[i][l];
                }
                float bv[16];
                for (int l = 0; l < 16; l++) bv[l] = bias ? bias[cb * 16 + l] : 0.0f;
                for (size_t i = 0; i < ny; i++) {
                    float o[4][16];
                    at6(o, t[i]);
                    const size_t base = cb * plane + ((oy0 + i) * w + ox0) * 16;
                    float *dp = dst + base;
                    const float *rp = res ? res + base : 0;
                    for (size_t j = 0; j < nx; j++) {
                        for (int l = 0; l < 16; l++) {
                            float y = o[j][l] + bv[l];
                            if (leaky) y = y >= 0.0f ? y : slope * y;
                            if (rp) y = alpha * y + beta * rp[j * 16 + l];
                            dp[j * 16 + l] = y;
                        }
                    }
                }
            }
        }
    }
}

void ck_wino43_input_p16_scalar(float *v, const float *src, size_t h, size_t w, size_t ty0, size_t tile_rows,
                                size_t cb0, size_t cb1, size_t ldv, size_t xi_stride) {
    wino_in_body(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xi_stride);
}
void ck_wino43_output_p16_scalar(float *dst, const float *m, const float *bias, size_t h, size_t w, size_t ty0,
                                 size_t tile_rows, size_t cb0, size_t cb1, size_t ldm, size_t xi_stride,
                                 int leaky, float slope, const float *res, float alpha, float beta) {
    wino_out_body(dst, m, bias, h, w, ty0, tile_rows, cb0, cb1, ldm, xi_stride, leaky, slope, res, alpha, beta);
}

#if CK_X86
CK_TARGET_AVX512 static void upsample2x_avx512(float *dst, const float *src, size_t planes, size_t h, size_t w,
                                               size_t elem) {
    upsample2x_body(dst, src, planes, h, w, elem);
}
CK_TARGET_AVX2 static void upsample2x_avx2(float *dst, const float *src, size_t planes, size_t h, size_t w,
                                           size_t elem) {
    upsample2x_body(dst, src, planes, h, w, elem);
}
CK_TARGET_AVX512 static void wino_in_avx512(float *v, const float *src, size_t h, size_t w, size_t ty0,
                                            size_t tile_rows, size_t cb0, size_t cb1, size_t ldv, size_t xs) {
    wino_in_body(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xs);
}
CK_TARGET_AVX2 static void wino_in_avx2(float *v, const float *src, size_t h, size_t w, size_t ty0,
                                        size_t tile_rows, size_t cb0, size_t cb1, size_t ldv, size_t xs) {
    wino_in_body(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xs);
}
CK_TARGET_AVX512 static void wino_out_avx512(float *dst, const float *m, const float *bias, size_t h, size_t w,
                                             size_t ty0, size_t tile_rows, size_t cb0, size_t cb1, size_t ldm,
                                             size_t xs, int leaky, float slope, const float *res, float alpha,
                                             float beta) {
    wino_out_body(dst, m, bias, h, w, ty0, tile_rows, cb0, cb1, ldm, xs, leaky, slope, res, alpha, beta);
}
CK_TARGET_AVX2 static void wino_out_avx2(float *dst, const float *m, const float *bias, size_t h, size_t w,
                                         size_t ty0, size_t tile_rows, size_t cb0, size_t cb1, size_t ldm,
                                         size_t xs, int leaky, float slope, const float *res, float alpha,
                                         float beta) {
    wino_out_body(dst, m, bias, h, w, ty0, tile_rows, cb0, cb1, ldm, xs, leaky, slope, res, alpha, beta);
}
#endif

void ck_upsample_nearest2x(float *dst, const float *src, size_t planes, size_t h, size_t w, size_t elem) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: upsample2x_avx512(dst, src, planes, h, w, elem); return;
    case CK_ISA_AVX2: upsample2x_avx2(dst, src, planes, h, w, elem); return;
    default: break;
    }
#endif
    ck_upsample_nearest2x_scalar(dst, src, planes, h, w, elem);
}

void ck_wino43_input_p16(float *v, const float *src, size_t h, size_t w, size_t ty0, size_t tile_rows,
                         size_t cb0, size_t cb1, size_t ldv, size_t xi_stride) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: wino_in_avx512(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xi_stride); return;
    case CK_ISA_AVX2: wino_in_avx2(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xi_stride); return;
    default: break;
    }
#endif
    ck_wino43_input_p16_scalar(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xi_stride);
}

void ck_wino43_output_p16(float *dst, const float *m, const float *bias, size_t h, size_t w, size_t ty0,
                          size_t tile_rows, size_t cb0, size_t cb1, size_t ldm, size_t xi_stride,
                          int leaky, float slope, const float *res, float alpha, float beta) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512:
        wino_out_avx512(dst, m, bias, h, w, ty0, tile_rows, cb0, cb1, ldm, xi_stride, leaky, slope, res, alpha, beta);
        return;
    case CK_ISA_AVX2:
        wino_out_avx2(dst, m, bias, h, w, ty0, tile_rows, cb0, cb1, ldm, xi_stride, leaky, slope, res, alpha, beta);
        return;
    default: break;
    }
#endif
    ck_wino43_output_p16_scalar(dst, m, bias, h, w, ty0, tile_rows, cb0, cb1, ldm, xi_stride, leaky, slope, res,
                                alpha, beta);
}
