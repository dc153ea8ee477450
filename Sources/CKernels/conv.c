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

/* One 1-D transform of 16-lane vectors (B^T: n -> n, A^T: n -> r); every one has this type, so the tile bodies
 * below take it as a parameter and are specialised by inlining. */
typedef void (*ck_wino_1d)(float (*out)[16], float (*in)[16]);

/* Input transform of an F(r x r, 3x3) Winograd convolution (input tiles n x n, n = r + 2; at most 8) for the tile
 * rows [ty0, ty0 + tile_rows) and channel blocks [cb0, cb1): V[xi][tile][cb*16 + lane], xi = i*n + j, slices
 * `xs` apart. Instantiated as F(4x4,3x3) (n 6, bt6) and F(6x6,3x3) (n 8, bt8), per ISA variant. */
CK_INLINE void wino_in_tiles(const int n, const int r, ck_wino_1d bt, float *restrict v, const float *restrict src,
                             size_t h, size_t w, size_t ty0, size_t tile_rows, size_t cb0, size_t cb1, size_t ldv,
                             size_t xs, size_t pad) {
    const size_t tiles_x = (w + 2 * pad - 2 + (size_t)r - 1) / (size_t)r;
    const size_t plane = h * w * 16;
    for (size_t ty = ty0; ty < ty0 + tile_rows; ty++) {
        for (size_t tx = 0; tx < tiles_x; tx++) {
            const long y0 = (long)ty * r - (long)pad, x0 = (long)tx * r - (long)pad;
            const size_t tt = (ty - ty0) * tiles_x + tx;
            for (size_t cb = cb0; cb < cb1; cb++) {
                const float *s = src + cb * plane;
                float d[8][8][16];
                for (int i = 0; i < n; i++) {
                    long yy = y0 + i;
                    for (int j = 0; j < n; j++) {
                        long xx = x0 + j;
                        const int inside = yy >= 0 && yy < (long)h && xx >= 0 && xx < (long)w;
                        const float *p = inside ? s + ((size_t)yy * w + (size_t)xx) * 16 : 0;
                        for (int l = 0; l < 16; l++) d[i][j][l] = inside ? p[l] : 0.0f;
                    }
                }
                /* columns: t[.][j] = B^T d[.][j] ; rows: o[i][.] = B^T t[i][.] */
                float t[8][8][16];
                for (int j = 0; j < n; j++) {
                    float col[8][16], res[8][16];
                    for (int i = 0; i < n; i++)
                        for (int l = 0; l < 16; l++) col[i][l] = d[i][j][l];
                    bt(res, col);
                    for (int i = 0; i < n; i++)
                        for (int l = 0; l < 16; l++) t[i][j][l] = res[i][l];
                }
                float *vp = v + tt * ldv + cb * 16;
                for (int i = 0; i < n; i++) {
                    float res[8][16];
                    bt(res, t[i]);
                    for (int j = 0; j < n; j++) {
                        float *o = vp + (size_t)(i * n + j) * xs;
                        for (int l = 0; l < 16; l++) o[l] = res[j][l];
                    }
                }
            }
        }
    }
}

/* Output transform (r x r outputs from n x n products, A^T applied twice) with bias, LeakyReLU and the residual
 * `alpha*y + beta*res` fused; edge tiles write only their pixels inside the h x w output. */
CK_INLINE void wino_out_tiles(const int n, const int r, ck_wino_1d at, float *restrict dst, const float *restrict m,
                              const float *restrict bias, size_t h, size_t w, size_t ty0, size_t tile_rows,
                              size_t cb0, size_t cb1, size_t ldm, size_t xs, int leaky, float slope, const float *res,
                              float alpha, float beta) {
    const size_t tiles_x = (w + (size_t)r - 1) / (size_t)r;
    const size_t plane = h * w * 16;
    for (size_t ty = ty0; ty < ty0 + tile_rows; ty++) {
        for (size_t tx = 0; tx < tiles_x; tx++) {
            const size_t tt = (ty - ty0) * tiles_x + tx;
            const size_t oy0 = ty * (size_t)r, ox0 = tx * (size_t)r;
            const size_t ny = h - oy0 < (size_t)r ? h - oy0 : (size_t)r, nx = w - ox0 < (size_t)r ? w - ox0 : (size_t)r;
            for (size_t cb = cb0; cb < cb1; cb++) {
                const float *mp = m + tt * ldm + cb * 16;
                float t[8][8][16];
                for (int j = 0; j < n; j++) {
                    float col[8][16], rr[8][16];
                    for (int i = 0; i < n; i++) {
                        const float *q = mp + (size_t)(i * n + j) * xs;
                        for (int l = 0; l < 16; l++) col[i][l] = q[l];
                    }
                    at(rr, col);
                    for (int i = 0; i < r; i++)
                        for (int l = 0; l < 16; l++) t[i][j][l] = rr[i][l];
                }
                float bv[16];
                for (int l = 0; l < 16; l++) bv[l] = bias ? bias[cb * 16 + l] : 0.0f;
                for (size_t i = 0; i < ny; i++) {
                    float o[8][16];
                    at(o, t[i]);
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

CK_INLINE void wino_in_body(float *restrict v, const float *restrict src, size_t h, size_t w, size_t ty0,
                            size_t tile_rows, size_t cb0, size_t cb1, size_t ldv, size_t xs, size_t pad) {
    wino_in_tiles(6, 4, bt6, v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xs, pad);
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
    wino_out_tiles(6, 4, at6, dst, m, bias, h, w, ty0, tile_rows, cb0, cb1, ldm, xs, leaky, slope, res, alpha, beta);
}

void ck_wino43_input_p16_scalar(float *v, const float *src, size_t h, size_t w, size_t ty0, size_t tile_rows,
                                size_t cb0, size_t cb1, size_t ldv, size_t xi_stride, size_t pad) {
    wino_in_body(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xi_stride, pad);
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
/* AVX-512 Winograd transforms with explicit intrinsics: one zmm = the 16 channels of one pixel. */
CK_TARGET_AVX512 static inline void bt6_avx512(__m512 o[6], __m512 d0, __m512 d1, __m512 d2, __m512 d3, __m512 d4,
                                               __m512 d5) {
    const __m512 c4 = _mm512_set1_ps(4.0f), cm5 = _mm512_set1_ps(-5.0f), cm4 = _mm512_set1_ps(-4.0f),
                 c2 = _mm512_set1_ps(2.0f);
    o[0] = _mm512_fmadd_ps(c4, d0, _mm512_fmadd_ps(cm5, d2, d4));
    o[1] = _mm512_fmadd_ps(cm4, _mm512_add_ps(d1, d2), _mm512_add_ps(d3, d4));
    o[2] = _mm512_fmadd_ps(c4, _mm512_sub_ps(d1, d2), _mm512_sub_ps(d4, d3));
    o[3] = _mm512_fmadd_ps(c2, _mm512_sub_ps(d3, d1), _mm512_sub_ps(d4, d2));
    o[4] = _mm512_fmadd_ps(c2, _mm512_sub_ps(d1, d3), _mm512_sub_ps(d4, d2));
    o[5] = _mm512_fmadd_ps(c4, d1, _mm512_fmadd_ps(cm5, d3, d5));
}

/* One 6x6x16 patch (row stride `rs` floats, pixel stride 16) to 36 vectors at v + xi*xs. */
CK_TARGET_AVX512 static inline void wino_in_patch_avx512(float *v, const float *p, size_t rs, size_t xs) {
    __m512 t[6][6];
    for (int j = 0; j < 6; j++) {
        const float *q = p + j * 16;
        __m512 o[6];
        bt6_avx512(o, _mm512_loadu_ps(q), _mm512_loadu_ps(q + rs), _mm512_loadu_ps(q + 2 * rs),
                   _mm512_loadu_ps(q + 3 * rs), _mm512_loadu_ps(q + 4 * rs), _mm512_loadu_ps(q + 5 * rs));
        for (int i = 0; i < 6; i++) t[i][j] = o[i];
    }
    for (int i = 0; i < 6; i++) {
        __m512 o[6];
        bt6_avx512(o, t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5]);
        for (int j = 0; j < 6; j++) _mm512_storeu_ps(v + (size_t)(i * 6 + j) * xs, o[j]);
    }
}

CK_TARGET_AVX512 static void wino_in_avx512(float *v, const float *src, size_t h, size_t w, size_t ty0,
                                            size_t tile_rows, size_t cb0, size_t cb1, size_t ldv, size_t xs,
                                            size_t pad) {
    const size_t tiles_x = (w + 2 * pad - 2 + 3) / 4;
    const size_t plane = h * w * 16;
    float patch[6 * 6 * 16] __attribute__((aligned(64)));
    /* channel block outermost: each block's 6 source rows stream through the cache once */
    for (size_t cb = cb0; cb < cb1; cb++) {
        const float *s = src + cb * plane;
        for (size_t ty = ty0; ty < ty0 + tile_rows; ty++) {
            for (size_t tx = 0; tx < tiles_x; tx++) {
                const long y0 = (long)ty * 4 - (long)pad, x0 = (long)tx * 4 - (long)pad;
                const int interior = y0 >= 0 && x0 >= 0 && y0 + 6 <= (long)h && x0 + 6 <= (long)w;
                const size_t tt = (ty - ty0) * tiles_x + tx;
                float *vp = v + tt * ldv + cb * 16;
                if (interior) {
                    wino_in_patch_avx512(vp, s + ((size_t)y0 * w + (size_t)x0) * 16, w * 16, xs);
                } else {
                    for (int i = 0; i < 6; i++) {
                        long yy = y0 + i;
                        for (int j = 0; j < 6; j++) {
                            long xx = x0 + j;
                            __m512 val = _mm512_setzero_ps();
                            if (yy >= 0 && yy < (long)h && xx >= 0 && xx < (long)w)
                                val = _mm512_loadu_ps(s + ((size_t)yy * w + (size_t)xx) * 16);
                            _mm512_store_ps(patch + (i * 6 + j) * 16, val);
                        }
                    }
                    wino_in_patch_avx512(vp, patch, 6 * 16, xs);
                }
            }
        }
    }
}

CK_TARGET_AVX512 static inline void at6_avx512(__m512 o[4], __m512 m0, __m512 m1, __m512 m2, __m512 m3, __m512 m4,
                                               __m512 m5) {
    const __m512 c2 = _mm512_set1_ps(2.0f), c4 = _mm512_set1_ps(4.0f), c8 = _mm512_set1_ps(8.0f);
    __m512 a = _mm512_add_ps(m1, m2), b = _mm512_sub_ps(m1, m2), c = _mm512_add_ps(m3, m4), d = _mm512_sub_ps(m3, m4);
    o[0] = _mm512_add_ps(_mm512_add_ps(m0, a), c);
    o[1] = _mm512_fmadd_ps(c2, d, b);
    o[2] = _mm512_fmadd_ps(c4, c, a);
    o[3] = _mm512_add_ps(_mm512_fmadd_ps(c8, d, b), m5);
}

CK_TARGET_AVX512 static void wino_out_avx512(float *dst, const float *m, const float *bias, size_t h, size_t w,
                                             size_t ty0, size_t tile_rows, size_t cb0, size_t cb1, size_t ldm,
                                             size_t xs, int leaky, float slope, const float *res, float alpha,
                                             float beta) {
    const size_t tiles_x = (w + 3) / 4;
    const size_t plane = h * w * 16;
    const __m512 vslope = _mm512_set1_ps(slope), valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
    const __m512 zero = _mm512_setzero_ps();
    for (size_t ty = ty0; ty < ty0 + tile_rows; ty++) {
        for (size_t tx = 0; tx < tiles_x; tx++) {
            const size_t tt = (ty - ty0) * tiles_x + tx;
            const size_t oy0 = ty * 4, ox0 = tx * 4;
            const size_t ny = h - oy0 < 4 ? h - oy0 : 4, nx = w - ox0 < 4 ? w - ox0 : 4;
            for (size_t cb = cb0; cb < cb1; cb++) {
                const float *mp = m + tt * ldm + cb * 16;
                __m512 t[4][6];
                for (int j = 0; j < 6; j++) {
                    __m512 o[4];
                    at6_avx512(o, _mm512_loadu_ps(mp + (size_t)j * xs), _mm512_loadu_ps(mp + (size_t)(6 + j) * xs),
                               _mm512_loadu_ps(mp + (size_t)(12 + j) * xs), _mm512_loadu_ps(mp + (size_t)(18 + j) * xs),
                               _mm512_loadu_ps(mp + (size_t)(24 + j) * xs), _mm512_loadu_ps(mp + (size_t)(30 + j) * xs));
                    for (int i = 0; i < 4; i++) t[i][j] = o[i];
                }
                const __m512 bv = bias ? _mm512_loadu_ps(bias + cb * 16) : zero;
                for (size_t i = 0; i < ny; i++) {
                    __m512 o[4];
                    at6_avx512(o, t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5]);
                    const size_t base = cb * plane + ((oy0 + i) * w + ox0) * 16;
                    float *dp = dst + base;
                    const float *rp = res ? res + base : 0;
                    for (size_t j = 0; j < nx; j++) {
                        __m512 y = _mm512_add_ps(o[j], bv);
                        if (leaky) y = _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask(y, zero, _CMP_LT_OQ), y, vslope);
                        if (rp) y = _mm512_fmadd_ps(valpha, y, _mm512_mul_ps(vbeta, _mm512_loadu_ps(rp + j * 16)));
                        _mm512_storeu_ps(dp + j * 16, y);
                    }
                }
            }
        }
    }
}
CK_TARGET_AVX2 static void wino_in_avx2(float *v, const float *src, size_t h, size_t w, size_t ty0,
                                        size_t tile_rows, size_t cb0, size_t cb1, size_t ldv, size_t xs, size_t pad) {
    wino_in_body(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xs, pad);
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
                         size_t cb0, size_t cb1, size_t ldv, size_t xi_stride, size_t pad) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: wino_in_avx512(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xi_stride, pad); return;
    case CK_ISA_AVX2: wino_in_avx2(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xi_stride, pad); return;
    default: break;
    }
#endif
    ck_wino43_input_p16_scalar(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xi_stride, pad);
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

/* ---------------------------------------------------------------- small-N GEMM (Winograd products) */

void ck_sgemm_n16_scalar(float *c, const float *a, const float *b, size_t m, size_t n, size_t k, size_t lda,
                         size_t ldb, size_t ldc) {
    for (size_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        for (size_t j = 0; j < n; j++) ci[j] = 0.0f;
        for (size_t p = 0; p < k; p++) {
            const float av = a[i * lda + p];
            const float *bp = b + p * ldb;
            for (size_t j = 0; j < n; j++) ci[j] += av * bp[j];
        }
    }
}

void ck_sgemm_n16_p16_scalar(float *c, const float *a, const float *b, const float *bias, size_t m, size_t n,
                             size_t k, size_t lda, size_t ldb, size_t ldc, size_t ldq, int leaky, float slope) {
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) {
            float s = 0.0f;
            for (size_t p = 0; p < k; p++) s += a[i * lda + p] * b[p * ldb + j];
            if (bias) s += bias[j];
            if (leaky && s < 0.0f) s *= slope;
            c[i * ldc + (j / 16) * ldq + (j % 16)] = s;
        }
    }
}

#if CK_X86
/* Epilogue of the GEMM variants: bias per column, then LeakyReLU (slope 0 = ReLU). */
#define CK_EPI_AVX2(acc, bp, leaky, vslope)                                                                         \
    do {                                                                                                            \
        if (bp) acc = _mm256_add_ps(acc, _mm256_loadu_ps(bp));                                                      \
        if (leaky) acc = _mm256_blendv_ps(acc, _mm256_mul_ps(acc, vslope),                                         \
                                          _mm256_cmp_ps(acc, _mm256_setzero_ps(), _CMP_LT_OQ));                     \
    } while (0)

/* R rows x 16 columns (two ymm) micro-kernel: 2R accumulators. R = 6 (12 accumulators, 2 B loads and 6 broadcasts
 * per k step) keeps both FMA pipes of a Zen 2 / Haswell-class core busy past the FMA latency; the 4-row form used
 * before reached about half the FMA peak there. Smaller R serve the remainder rows. */
#define CK_GEMM_AVX2_MICRO(R)                                                                                       \
    CK_TARGET_AVX2 static inline void gemm_avx2_##R##x16(float *c, const float *a, const float *b, size_t k,      \
                                                         size_t lda, size_t ldb, size_t ldc, const float *bp,      \
                                                         int leaky, __m256 vslope) {                               \
        __m256 acc[R][2];                                                                                           \
        for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();                                  \
        for (size_t p = 0; p < k; p++) {                                                                            \
            const __m256 b0 = _mm256_loadu_ps(b + p * ldb), b1 = _mm256_loadu_ps(b + p * ldb + 8);                 \
            for (int r = 0; r < R; r++) {                                                                           \
                const __m256 av = _mm256_broadcast_ss(a + r * lda + p);                                             \
                acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);                                                     \
                acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);                                                     \
            }                                                                                                       \
        }                                                                                                           \
        for (int r = 0; r < R; r++) {                                                                               \
            CK_EPI_AVX2(acc[r][0], bp, leaky, vslope);                                                              \
            CK_EPI_AVX2(acc[r][1], bp ? bp + 8 : 0, leaky, vslope);                                                 \
            _mm256_storeu_ps(c + r * ldc, acc[r][0]);                                                               \
            _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);                                                           \
        }                                                                                                           \
    }
CK_GEMM_AVX2_MICRO(6)
CK_GEMM_AVX2_MICRO(5)
CK_GEMM_AVX2_MICRO(4)
CK_GEMM_AVX2_MICRO(3)
CK_GEMM_AVX2_MICRO(2)
CK_GEMM_AVX2_MICRO(1)

CK_TARGET_AVX2 static void sgemm_n16_avx2(float *c, const float *a, const float *b, size_t m, size_t n, size_t k,
                                          size_t lda, size_t ldb, size_t ldc, size_t ldq, const float *bias,
                                          int leaky, float slope) {
    const __m256 vslope = _mm256_set1_ps(slope);
    for (size_t j0 = 0; j0 < n; j0 += 16) {
        const float *bj = b + j0, *bp = bias ? bias + j0 : 0;
        float *cq = c + (j0 / 16) * ldq;
        size_t i = 0;
        for (; i + 6 <= m; i += 6) gemm_avx2_6x16(cq + i * ldc, a + i * lda, bj, k, lda, ldb, ldc, bp, leaky, vslope);
        switch (m - i) {
        case 5: gemm_avx2_5x16(cq + i * ldc, a + i * lda, bj, k, lda, ldb, ldc, bp, leaky, vslope); break;
        case 4: gemm_avx2_4x16(cq + i * ldc, a + i * lda, bj, k, lda, ldb, ldc, bp, leaky, vslope); break;
        case 3: gemm_avx2_3x16(cq + i * ldc, a + i * lda, bj, k, lda, ldb, ldc, bp, leaky, vslope); break;
        case 2: gemm_avx2_2x16(cq + i * ldc, a + i * lda, bj, k, lda, ldb, ldc, bp, leaky, vslope); break;
        case 1: gemm_avx2_1x16(cq + i * ldc, a + i * lda, bj, k, lda, ldb, ldc, bp, leaky, vslope); break;
        default: break;
        }
    }
}

/* R rows x NC zmm columns micro-kernel. */
#define CK_GEMM_MICRO(R, NC)                                                                                        \
    CK_TARGET_AVX512 static inline void gemm_micro_##R##x##NC(float *c, const float *a, const float *b, size_t k,  \
                                                              size_t lda, size_t ldb, size_t ldc, size_t ldq,    \
                                                              const float *bias, int leaky, float slope) {       \
        __m512 acc[R][NC];                                                                                          \
        for (int r = 0; r < R; r++)                                                                                 \
            for (int q = 0; q < NC; q++) acc[r][q] = _mm512_setzero_ps();                                           \
        for (size_t p = 0; p < k; p++) {                                                                            \
            __m512 bv[NC];                                                                                          \
            for (int q = 0; q < NC; q++) bv[q] = _mm512_loadu_ps(b + p * ldb + q * 16);                             \
            for (int r = 0; r < R; r++) {                                                                           \
                __m512 av = _mm512_set1_ps(a[r * lda + p]);                                                         \
                for (int q = 0; q < NC; q++) acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);                     \
            }                                                                                                       \
        }                                                                                                           \
        if (bias || leaky) {                                                                                        \
            const __m512 vslope = _mm512_set1_ps(slope), zero = _mm512_setzero_ps();                                \
            for (int q = 0; q < NC; q++) {                                                                          \
                const __m512 bq = bias ? _mm512_loadu_ps(bias + q * 16) : zero;                                     \
                for (int r = 0; r < R; r++) {                                                                       \
                    __m512 y = _mm512_add_ps(acc[r][q], bq);                                                        \
                    if (leaky) y = _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask(y, zero, _CMP_LT_OQ), y, vslope);       \
                    acc[r][q] = y;                                                                                  \
                }                                                                                                   \
            }                                                                                                       \
        }                                                                                                           \
        for (int r = 0; r < R; r++)                                                                                 \
            for (int q = 0; q < NC; q++) _mm512_storeu_ps(c + r * ldc + q * ldq, acc[r][q]);                        \
    }
CK_GEMM_MICRO(6, 4)
CK_GEMM_MICRO(4, 4)
CK_GEMM_MICRO(2, 4)
CK_GEMM_MICRO(1, 4)
CK_GEMM_MICRO(8, 3)
CK_GEMM_MICRO(4, 3)
CK_GEMM_MICRO(2, 3)
CK_GEMM_MICRO(1, 3)
CK_GEMM_MICRO(12, 2)
CK_GEMM_MICRO(8, 2)
CK_GEMM_MICRO(4, 2)
CK_GEMM_MICRO(2, 2)
CK_GEMM_MICRO(1, 2)
CK_GEMM_MICRO(12, 1)
CK_GEMM_MICRO(8, 1)
CK_GEMM_MICRO(4, 1)
CK_GEMM_MICRO(2, 1)
CK_GEMM_MICRO(1, 1)

CK_TARGET_AVX512 static void sgemm_n16_avx512(float *c, const float *a, const float *b, size_t m, size_t n, size_t k,
                                              size_t lda, size_t ldb, size_t ldc, size_t ldq, const float *bias,
                                              int leaky, float slope) {
    size_t j0 = 0;
    while (j0 < n) {
        size_t nc = (n - j0) / 16;
        if (nc > 4) nc = 4;
        const float *bj = b + j0;
        float *cj = c + (j0 / 16) * ldq;
        const float *bb = bias ? bias + j0 : 0;
        size_t i = 0;
        /* Full R-row micro tiles, then the remaining rows in tiles of 8, 4, 2, 1 (not one row at a time: a
         * one-row tile reloads the whole B panel for a handful of FMAs). */
#define CK_MICRO(R, NC)                                                                                             \
    do {                                                                                                            \
        gemm_micro_##R##x##NC(cj + i * ldc, a + i * lda, bj, k, lda, ldb, ldc, ldq, bb, leaky, slope);              \
        i += R;                                                                                                     \
    } while (0)
        switch (nc) {
        case 4:
            while (i + 6 <= m) CK_MICRO(6, 4);
            if (i + 4 <= m) CK_MICRO(4, 4);
            if (i + 2 <= m) CK_MICRO(2, 4);
            if (i < m) CK_MICRO(1, 4);
            break;
        case 3:
            while (i + 8 <= m) CK_MICRO(8, 3);
            if (i + 4 <= m) CK_MICRO(4, 3);
            if (i + 2 <= m) CK_MICRO(2, 3);
            if (i < m) CK_MICRO(1, 3);
            break;
        case 2:
            while (i + 12 <= m) CK_MICRO(12, 2);
            if (i + 8 <= m) CK_MICRO(8, 2);
            if (i + 4 <= m) CK_MICRO(4, 2);
            if (i + 2 <= m) CK_MICRO(2, 2);
            if (i < m) CK_MICRO(1, 2);
            break;
        default:
            while (i + 12 <= m) CK_MICRO(12, 1);
            if (i + 8 <= m) CK_MICRO(8, 1);
            if (i + 4 <= m) CK_MICRO(4, 1);
            if (i + 2 <= m) CK_MICRO(2, 1);
            if (i < m) CK_MICRO(1, 1);
            break;
        }
#undef CK_MICRO
        j0 += nc * 16;
    }
}
#endif

void ck_sgemm_n16(float *c, const float *a, const float *b, size_t m, size_t n, size_t k, size_t lda, size_t ldb,
                  size_t ldc) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: sgemm_n16_avx512(c, a, b, m, n, k, lda, ldb, ldc, 16, 0, 0, 0.0f); return;
    case CK_ISA_AVX2: sgemm_n16_avx2(c, a, b, m, n, k, lda, ldb, ldc, 16, 0, 0, 0.0f); return;
    default: break;
    }
#endif
    ck_sgemm_n16_scalar(c, a, b, m, n, k, lda, ldb, ldc);
}

void ck_sgemm_n16_p16(float *c, const float *a, const float *b, const float *bias, size_t m, size_t n, size_t k,
                      size_t lda, size_t ldb, size_t ldc, size_t ldq, int leaky, float slope) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: sgemm_n16_avx512(c, a, b, m, n, k, lda, ldb, ldc, ldq, bias, leaky, slope); return;
    case CK_ISA_AVX2: sgemm_n16_avx2(c, a, b, m, n, k, lda, ldb, ldc, ldq, bias, leaky, slope); return;
    default: break;
    }
#endif
    ck_sgemm_n16_p16_scalar(c, a, b, bias, m, n, k, lda, ldb, ldc, ldq, leaky, slope);
}

/* ---------------------------------------------------------------- im2col on P16 (pixel-major rows) */

void ck_im2col_p16(float *col, const float *src, size_t cblocks, size_t h, size_t w, size_t kh, size_t kw,
                   size_t stride_h, size_t stride_w, size_t pad_top, size_t pad_left, size_t dil_h, size_t dil_w,
                   size_t out_w, size_t p0, size_t np, size_t ldcol) {
    const size_t plane = h * w * 16;
    for (size_t r = 0; r < np; r++) {
        const size_t oy = (p0 + r) / out_w, ox = (p0 + r) % out_w;
        float *d = col + r * ldcol;
        for (size_t ky = 0; ky < kh; ky++) {
            const long iy = (long)(oy * stride_h + ky * dil_h) - (long)pad_top;
            for (size_t kx = 0; kx < kw; kx++) {
                const long ix = (long)(ox * stride_w + kx * dil_w) - (long)pad_left;
                float *dk = d + (ky * kw + kx) * cblocks * 16;
                if (iy < 0 || iy >= (long)h || ix < 0 || ix >= (long)w) {
                    memset(dk, 0, cblocks * 16 * sizeof(float));
                    continue;
                }
                const float *s = src + ((size_t)iy * w + (size_t)ix) * 16;
                for (size_t cb = 0; cb < cblocks; cb++) memcpy(dk + cb * 16, s + cb * plane, 16 * sizeof(float));
            }
        }
    }
}

void ck_wino43_conv_p16(float *dst, const float *src, const float *u, const float *bias, size_t h, size_t w,
                        size_t pad, size_t cin_pad, size_t cout_pad, size_t ty0, size_t ty1, size_t batch_tiles,
                        float *v, float *m, int leaky, float slope, const float *res, float alpha, float beta) {
    const size_t oh = h + 2 * pad - 2, ow = w + 2 * pad - 2;
    const size_t tiles_x = (ow + 3) / 4;
    size_t rows_per_batch = batch_tiles / tiles_x;
    if (rows_per_batch < 1) rows_per_batch = 1;
    for (size_t ty = ty0; ty < ty1; ty += rows_per_batch) {
        size_t rows = ty1 - ty < rows_per_batch ? ty1 - ty : rows_per_batch;
        size_t tiles = rows * tiles_x;
        /* +16 floats per slice: 36 slices a multiple of 4 KiB apart would share one L1 set (conflict misses) */
        size_t vs = tiles * cin_pad + 16, ms = tiles * cout_pad + 16;
        ck_wino43_input_p16(v, src, h, w, ty, rows, 0, cin_pad / 16, cin_pad, vs, pad);
        for (size_t xi = 0; xi < 36; xi++)
            ck_sgemm_n16(m + xi * ms, v + xi * vs, u + xi * cin_pad * cout_pad, tiles, cout_pad, cin_pad, cin_pad,
                         cout_pad, cout_pad);
        ck_wino43_output_p16(dst, m, bias, oh, ow, ty, rows, 0, cout_pad / 16, cout_pad, ms, leaky, slope, res, alpha,
                             beta);
    }
}

/* ---------------------------------------------------------------- Winograd F(6x6,3x3) */
/* Same layout and conventions as F(4x4,3x3) above with 8x8 input tiles, 6x6 output tiles and 64 products
 * (points 0, +-1, +-2, +-1/2; matrices as in Lavin & Gray / wincnn). Fewer multiply-adds per output (64/36 vs
 * 36/16 per input-output channel pair) at the price of larger transforms and rounding error. */

static const double G63[8][3] = {
    {1.0, 0, 0},
    {-2.0 / 9, -2.0 / 9, -2.0 / 9},
    {-2.0 / 9, 2.0 / 9, -2.0 / 9},
    {1.0 / 90, 1.0 / 45, 2.0 / 45},
    {1.0 / 90, -1.0 / 45, 2.0 / 45},
    {32.0 / 45, 16.0 / 45, 8.0 / 45},
    {32.0 / 45, -16.0 / 45, 8.0 / 45},
    {0, 0, 1.0},
};

void ck_wino63_weight_transform(float *u, const float *w, size_t cout, size_t cin, size_t cout_pad, size_t cin_pad) {
    memset(u, 0, 64 * cin_pad * cout_pad * sizeof(float));
    for (size_t co = 0; co < cout; co++) {
        for (size_t ci = 0; ci < cin; ci++) {
            const float *g = w + (co * cin + ci) * 9;
            double tmp[8][3]; /* G g */
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 3; j++)
                    tmp[i][j] = G63[i][0] * g[0 * 3 + j] + G63[i][1] * g[1 * 3 + j] + G63[i][2] * g[2 * 3 + j];
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 8; j++) {
                    double v = tmp[i][0] * G63[j][0] + tmp[i][1] * G63[j][1] + tmp[i][2] * G63[j][2];
                    u[((size_t)(i * 8 + j) * cin_pad + ci) * cout_pad + co] = (float)v;
                }
        }
    }
}

/* B^T (8x8) applied to 8 vectors of 16 lanes. */
CK_INLINE void bt8(float out[8][16], float in[8][16]) {
    for (int l = 0; l < 16; l++) {
        float d0 = in[0][l], d1 = in[1][l], d2 = in[2][l], d3 = in[3][l], d4 = in[4][l], d5 = in[5][l],
              d6 = in[6][l], d7 = in[7][l];
        out[0][l] = d0 - d6 + 5.25f * (d4 - d2);
        out[7][l] = d7 - d1 + 5.25f * (d3 - d5);
        float t1 = d2 + d6 - 4.25f * d4, t2 = d1 + d5 - 4.25f * d3;
        out[1][l] = t1 + t2;
        out[2][l] = t1 - t2;
        t1 = 0.25f * d2 + d6 - 1.25f * d4;
        t2 = 0.5f * d1 - 2.5f * d3 + 2.0f * d5;
        out[3][l] = t1 + t2;
        out[4][l] = t1 - t2;
        t1 = 4.0f * d2 + d6 - 5.0f * d4;
        t2 = 2.0f * d1 - 2.5f * d3 + 0.5f * d5;
        out[5][l] = t1 + t2;
        out[6][l] = t1 - t2;
    }
}

/* A^T (6x8) applied to 8 vectors -> 6 vectors. */
CK_INLINE void at8(float out[6][16], float in[8][16]) {
    for (int l = 0; l < 16; l++) {
        float m0 = in[0][l], m1 = in[1][l], m2 = in[2][l], m3 = in[3][l], m4 = in[4][l], m5 = in[5][l],
              m6 = in[6][l], m7 = in[7][l];
        float a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4, e = m5 + m6, f = m5 - m6;
        out[0][l] = m0 + a + c + e;
        out[1][l] = b + 2.0f * d + 0.5f * f;
        out[2][l] = a + 4.0f * c + 0.25f * e;
        out[3][l] = b + 8.0f * d + 0.125f * f;
        out[4][l] = a + 16.0f * c + 0.0625f * e;
        out[5][l] = b + 32.0f * d + 0.03125f * f + m7;
    }
}

CK_INLINE void wino63_in_body(float *restrict v, const float *restrict src, size_t h, size_t w, size_t ty0,
                              size_t tile_rows, size_t cb0, size_t cb1, size_t ldv, size_t xs, size_t pad) {
    wino_in_tiles(8, 6, bt8, v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xs, pad);
}

CK_INLINE void wino63_out_body(float *restrict dst, const float *restrict m, const float *restrict bias, size_t h,
                               size_t w, size_t ty0, size_t tile_rows, size_t cb0, size_t cb1, size_t ldm, size_t xs,
                               int leaky, float slope, const float *res, float alpha, float beta) {
    wino_out_tiles(8, 6, at8, dst, m, bias, h, w, ty0, tile_rows, cb0, cb1, ldm, xs, leaky, slope, res, alpha, beta);
}

void ck_wino63_input_p16_scalar(float *v, const float *src, size_t h, size_t w, size_t ty0, size_t tile_rows,
                                size_t cb0, size_t cb1, size_t ldv, size_t xi_stride, size_t pad) {
    wino63_in_body(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xi_stride, pad);
}
void ck_wino63_output_p16_scalar(float *dst, const float *m, const float *bias, size_t h, size_t w, size_t ty0,
                                 size_t tile_rows, size_t cb0, size_t cb1, size_t ldm, size_t xi_stride,
                                 int leaky, float slope, const float *res, float alpha, float beta) {
    wino63_out_body(dst, m, bias, h, w, ty0, tile_rows, cb0, cb1, ldm, xi_stride, leaky, slope, res, alpha, beta);
}

#if CK_X86
CK_TARGET_AVX512 static inline void bt8_avx512(__m512 o[8], const __m512 d[8]) {
    const __m512 c525 = _mm512_set1_ps(5.25f), cm425 = _mm512_set1_ps(-4.25f), c025 = _mm512_set1_ps(0.25f),
                 cm125 = _mm512_set1_ps(-1.25f), c05 = _mm512_set1_ps(0.5f), cm25 = _mm512_set1_ps(-2.5f),
                 c2 = _mm512_set1_ps(2.0f), c4 = _mm512_set1_ps(4.0f), cm5 = _mm512_set1_ps(-5.0f);
    o[0] = _mm512_fmadd_ps(c525, _mm512_sub_ps(d[4], d[2]), _mm512_sub_ps(d[0], d[6]));
    o[7] = _mm512_fmadd_ps(c525, _mm512_sub_ps(d[3], d[5]), _mm512_sub_ps(d[7], d[1]));
    __m512 t1 = _mm512_fmadd_ps(cm425, d[4], _mm512_add_ps(d[2], d[6]));
    __m512 t2 = _mm512_fmadd_ps(cm425, d[3], _mm512_add_ps(d[1], d[5]));
    o[1] = _mm512_add_ps(t1, t2);
    o[2] = _mm512_sub_ps(t1, t2);
    t1 = _mm512_fmadd_ps(c025, d[2], _mm512_fmadd_ps(cm125, d[4], d[6]));
    t2 = _mm512_fmadd_ps(c05, d[1], _mm512_fmadd_ps(cm25, d[3], _mm512_mul_ps(c2, d[5])));
    o[3] = _mm512_add_ps(t1, t2);
    o[4] = _mm512_sub_ps(t1, t2);
    t1 = _mm512_fmadd_ps(c4, d[2], _mm512_fmadd_ps(cm5, d[4], d[6]));
    t2 = _mm512_fmadd_ps(c2, d[1], _mm512_fmadd_ps(cm25, d[3], _mm512_mul_ps(c05, d[5])));
    o[5] = _mm512_add_ps(t1, t2);
    o[6] = _mm512_sub_ps(t1, t2);
}

/* One 8x8x16 patch (row stride `rs` floats, pixel stride 16) to 64 vectors at v + xi*xs. */
CK_TARGET_AVX512 static inline void wino63_in_patch_avx512(float *v, const float *p, size_t rs, size_t xs) {
    __m512 t[8][8];
    for (int j = 0; j < 8; j++) {
        const float *q = p + j * 16;
        __m512 d[8], o[8];
        for (int i = 0; i < 8; i++) d[i] = _mm512_loadu_ps(q + i * rs);
        bt8_avx512(o, d);
        for (int i = 0; i < 8; i++) t[i][j] = o[i];
    }
    for (int i = 0; i < 8; i++) {
        __m512 o[8];
        bt8_avx512(o, t[i]);
        for (int j = 0; j < 8; j++) _mm512_storeu_ps(v + (size_t)(i * 8 + j) * xs, o[j]);
    }
}

CK_TARGET_AVX512 static void wino63_in_avx512(float *v, const float *src, size_t h, size_t w, size_t ty0,
                                              size_t tile_rows, size_t cb0, size_t cb1, size_t ldv, size_t xs,
                                              size_t pad) {
    const size_t tiles_x = (w + 2 * pad - 2 + 5) / 6;
    const size_t plane = h * w * 16;
    float patch[8 * 8 * 16] __attribute__((aligned(64)));
    for (size_t cb = cb0; cb < cb1; cb++) {
        const float *s = src + cb * plane;
        for (size_t ty = ty0; ty < ty0 + tile_rows; ty++) {
            for (size_t tx = 0; tx < tiles_x; tx++) {
                const long y0 = (long)ty * 6 - (long)pad, x0 = (long)tx * 6 - (long)pad;
                const int interior = y0 >= 0 && x0 >= 0 && y0 + 8 <= (long)h && x0 + 8 <= (long)w;
                const size_t tt = (ty - ty0) * tiles_x + tx;
                float *vp = v + tt * ldv + cb * 16;
                if (interior) {
                    wino63_in_patch_avx512(vp, s + ((size_t)y0 * w + (size_t)x0) * 16, w * 16, xs);
                } else {
                    for (int i = 0; i < 8; i++) {
                        long yy = y0 + i;
                        for (int j = 0; j < 8; j++) {
                            long xx = x0 + j;
                            __m512 val = _mm512_setzero_ps();
                            if (yy >= 0 && yy < (long)h && xx >= 0 && xx < (long)w)
                                val = _mm512_loadu_ps(s + ((size_t)yy * w + (size_t)xx) * 16);
                            _mm512_store_ps(patch + (i * 8 + j) * 16, val);
                        }
                    }
                    wino63_in_patch_avx512(vp, patch, 8 * 16, xs);
                }
            }
        }
    }
}

CK_TARGET_AVX512 static inline void at8_avx512(__m512 o[6], const __m512 m[8]) {
    const __m512 c2 = _mm512_set1_ps(2.0f), c4 = _mm512_set1_ps(4.0f), c8 = _mm512_set1_ps(8.0f),
                 c16 = _mm512_set1_ps(16.0f), c32 = _mm512_set1_ps(32.0f), h1 = _mm512_set1_ps(0.5f),
                 h2 = _mm512_set1_ps(0.25f), h3 = _mm512_set1_ps(0.125f), h4 = _mm512_set1_ps(0.0625f),
                 h5 = _mm512_set1_ps(0.03125f);
    __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]), c = _mm512_add_ps(m[3], m[4]),
           d = _mm512_sub_ps(m[3], m[4]), e = _mm512_add_ps(m[5], m[6]), f = _mm512_sub_ps(m[5], m[6]);
    o[0] = _mm512_add_ps(_mm512_add_ps(m[0], a), _mm512_add_ps(c, e));
    o[1] = _mm512_fmadd_ps(h1, f, _mm512_fmadd_ps(c2, d, b));
    o[2] = _mm512_fmadd_ps(h2, e, _mm512_fmadd_ps(c4, c, a));
    o[3] = _mm512_fmadd_ps(h3, f, _mm512_fmadd_ps(c8, d, b));
    o[4] = _mm512_fmadd_ps(h4, e, _mm512_fmadd_ps(c16, c, a));
    o[5] = _mm512_add_ps(_mm512_fmadd_ps(h5, f, _mm512_fmadd_ps(c32, d, b)), m[7]);
}

CK_TARGET_AVX512 static void wino63_out_avx512(float *dst, const float *m, const float *bias, size_t h, size_t w,
                                               size_t ty0, size_t tile_rows, size_t cb0, size_t cb1, size_t ldm,
                                               size_t xs, int leaky, float slope, const float *res, float alpha,
                                               float beta) {
    const size_t tiles_x = (w + 5) / 6;
    const size_t plane = h * w * 16;
    const __m512 vslope = _mm512_set1_ps(slope), valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
    const __m512 zero = _mm512_setzero_ps();
    for (size_t ty = ty0; ty < ty0 + tile_rows; ty++) {
        for (size_t tx = 0; tx < tiles_x; tx++) {
            const size_t tt = (ty - ty0) * tiles_x + tx;
            const size_t oy0 = ty * 6, ox0 = tx * 6;
            const size_t ny = h - oy0 < 6 ? h - oy0 : 6, nx = w - ox0 < 6 ? w - ox0 : 6;
            for (size_t cb = cb0; cb < cb1; cb++) {
                const float *mp = m + tt * ldm + cb * 16;
                __m512 t[6][8];
                for (int j = 0; j < 8; j++) {
                    __m512 col[8], o[6];
                    for (int i = 0; i < 8; i++) col[i] = _mm512_loadu_ps(mp + (size_t)(i * 8 + j) * xs);
                    at8_avx512(o, col);
                    for (int i = 0; i < 6; i++) t[i][j] = o[i];
                }
                const __m512 bv = bias ? _mm512_loadu_ps(bias + cb * 16) : zero;
                for (size_t i = 0; i < ny; i++) {
                    __m512 o[6];
                    at8_avx512(o, t[i]);
                    const size_t base = cb * plane + ((oy0 + i) * w + ox0) * 16;
                    float *dp = dst + base;
                    const float *rp = res ? res + base : 0;
                    for (size_t j = 0; j < nx; j++) {
                        __m512 y = _mm512_add_ps(o[j], bv);
                        if (leaky) y = _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask(y, zero, _CMP_LT_OQ), y, vslope);
                        if (rp) y = _mm512_fmadd_ps(valpha, y, _mm512_mul_ps(vbeta, _mm512_loadu_ps(rp + j * 16)));
                        _mm512_storeu_ps(dp + j * 16, y);
                    }
                }
            }
        }
    }
}
CK_TARGET_AVX2 static void wino63_in_avx2(float *v, const float *src, size_t h, size_t w, size_t ty0,
                                          size_t tile_rows, size_t cb0, size_t cb1, size_t ldv, size_t xs,
                                          size_t pad) {
    wino63_in_body(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xs, pad);
}
CK_TARGET_AVX2 static void wino63_out_avx2(float *dst, const float *m, const float *bias, size_t h, size_t w,
                                           size_t ty0, size_t tile_rows, size_t cb0, size_t cb1, size_t ldm,
                                           size_t xs, int leaky, float slope, const float *res, float alpha,
                                           float beta) {
    wino63_out_body(dst, m, bias, h, w, ty0, tile_rows, cb0, cb1, ldm, xs, leaky, slope, res, alpha, beta);
}
#endif

void ck_wino63_input_p16(float *v, const float *src, size_t h, size_t w, size_t ty0, size_t tile_rows,
                         size_t cb0, size_t cb1, size_t ldv, size_t xi_stride, size_t pad) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: wino63_in_avx512(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xi_stride, pad); return;
    case CK_ISA_AVX2: wino63_in_avx2(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xi_stride, pad); return;
    default: break;
    }
#endif
    ck_wino63_input_p16_scalar(v, src, h, w, ty0, tile_rows, cb0, cb1, ldv, xi_stride, pad);
}

void ck_wino63_output_p16(float *dst, const float *m, const float *bias, size_t h, size_t w, size_t ty0,
                          size_t tile_rows, size_t cb0, size_t cb1, size_t ldm, size_t xi_stride,
                          int leaky, float slope, const float *res, float alpha, float beta) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512:
        wino63_out_avx512(dst, m, bias, h, w, ty0, tile_rows, cb0, cb1, ldm, xi_stride, leaky, slope, res, alpha,
                          beta);
        return;
    case CK_ISA_AVX2:
        wino63_out_avx2(dst, m, bias, h, w, ty0, tile_rows, cb0, cb1, ldm, xi_stride, leaky, slope, res, alpha, beta);
        return;
    default: break;
    }
#endif
    ck_wino63_output_p16_scalar(dst, m, bias, h, w, ty0, tile_rows, cb0, cb1, ldm, xi_stride, leaky, slope, res,
                                alpha, beta);
}

void ck_wino63_conv_p16(float *dst, const float *src, const float *u, const float *bias, size_t h, size_t w,
                        size_t pad, size_t cin_pad, size_t cout_pad, size_t ty0, size_t ty1, size_t batch_tiles,
                        float *v, float *m, int leaky, float slope, const float *res, float alpha, float beta) {
    const size_t oh = h + 2 * pad - 2, ow = w + 2 * pad - 2;
    const size_t tiles_x = (ow + 5) / 6;
    size_t rows_per_batch = batch_tiles / tiles_x;
    if (rows_per_batch < 1) rows_per_batch = 1;
    for (size_t ty = ty0; ty < ty1; ty += rows_per_batch) {
        size_t rows = ty1 - ty < rows_per_batch ? ty1 - ty : rows_per_batch;
        size_t tiles = rows * tiles_x;
        size_t vs = tiles * cin_pad + 16, ms = tiles * cout_pad + 16;
        ck_wino63_input_p16(v, src, h, w, ty, rows, 0, cin_pad / 16, cin_pad, vs, pad);
        for (size_t xi = 0; xi < 64; xi++)
            ck_sgemm_n16(m + xi * ms, v + xi * vs, u + xi * cin_pad * cout_pad, tiles, cout_pad, cin_pad, cin_pad,
                         cout_pad, cout_pad);
        ck_wino63_output_p16(dst, m, bias, oh, ow, ty, rows, 0, cout_pad / 16, cout_pad, ms, leaky, slope, res, alpha,
                             beta);
    }
}

size_t ck_atomic_fetch_add(size_t *p, size_t v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
