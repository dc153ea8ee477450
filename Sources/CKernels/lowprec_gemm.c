/* GEMM with low-precision weights (bf16, Q8_0, any type through a row dequantizer); see ck_lowprec.h.
 *
 * Two loop structures:
 *  - dot form (AVX2 variants, and AVX-512 with fewer than BCAST_MIN_ROWS activation rows): W read in place. The
 *    columns [n0, n1) are walked in panels of W rows sized for L2 (PANEL_BYTES); for each panel every block of 4
 *    activation rows meets every group of 4 W rows. A 4x4 micro-tile keeps one vector accumulator per (row,
 *    column) pair along k and sums its lanes at the end.
 *  - broadcast form (AVX512_BF16 / AVX512_VNNI with many activation rows): a strip of 32 W rows is repacked so one
 *    vector holds 16 columns, and each activation row's k-group is broadcast; no horizontal sums.
 * Ragged edges reuse a valid row pointer for the missing rows and drop those results, so every output depends only
 * on its own row and column: splitting [n0, n1) across threads never changes a bit. */
#include "internal.h"
#include "ck_lowprec.h"
#include "ck_quants.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TILE 4
#ifndef PANEL_BYTES /* (a -D override is for tuning experiments) */
#define PANEL_BYTES (512u * 1024u)
#endif

#if CK_X86
#define CK_TARGET_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))
#define CK_TARGET_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#endif

/* ---------------------------------------------------------------------------------------------------------------- */
/* Conversions and activation preparation (one implementation for every ISA: O(m*k), next to O(m*n*k)).           */

uint16_t ck_f32_to_bf16_rne(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u); /* NaN stays a quiet NaN */
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float f16_to_f32(uint16_t h) {
    float f;
    ck_f16_to_f32_scalar(&f, &h, 1);
    return f;
}

size_t ck_lp_bf16_ld(size_t k) { return (k + 31) / 32 * 32; }

void ck_lp_prepare_bf16_scalar(uint16_t *xb, size_t ldxb, const float *x, size_t ldx, size_t rows, size_t k) {
    for (size_t r = 0; r < rows; r++) {
        uint16_t *d = xb + r * ldxb;
        const float *s = x + r * ldx;
        for (size_t i = 0; i < k; i++) d[i] = ck_f32_to_bf16_rne(s[i]);
        for (size_t i = k; i < ldxb; i++) d[i] = 0;
    }
}

void ck_lp_prepare_q8_0_scalar(int8_t *xq, float *xd, const float *x, size_t ldx, size_t rows, size_t k) {
    size_t nb = k / CK_Q8_0_BLOCK;
    for (size_t r = 0; r < rows; r++) {
        const float *s = x + r * ldx;
        for (size_t b = 0; b < nb; b++) {
            const float *v = s + b * CK_Q8_0_BLOCK;
            float amax = 0;
            for (int i = 0; i < CK_Q8_0_BLOCK; i++) {
                float a = fabsf(v[i]);
                amax = (a > amax || a != a) ? a : amax; /* a NaN sticks: the block's scale becomes NaN */
            }
            float d = amax / 127.0f;
            /* a non-finite block (NaN or inf inside) gets q = 0 and its non-finite scale, so its outputs are not
             * finite either, as in float32 */
            float id = (d != 0.0f && isfinite(d)) ? 1.0f / d : 0.0f;
            int8_t *q = xq + r * k + b * CK_Q8_0_BLOCK;
            for (int i = 0; i < CK_Q8_0_BLOCK; i++) {
                float t = v[i] * id;
                q[i] = t == t ? (int8_t)roundf(t) : 0;
            }
            xd[r * nb + b] = d;
        }
    }
}

#if CK_X86
/* The same bits as the scalar preparation: integer round-to-nearest-even, NaN kept quiet. */
CK_TARGET_AVX512 static inline __m256i bf16x16_rne(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)),
                                            _mm512_set1_epi32(0x7F800000));
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(r);
}

CK_TARGET_AVX512 static void prepare_bf16_avx512(uint16_t *xb, size_t ldxb, const float *x, size_t ldx, size_t rows,
                                                 size_t k) {
    for (size_t r = 0; r < rows; r++) {
        uint16_t *d = xb + r * ldxb;
        const float *s = x + r * ldx;
        for (size_t i = 0; i < ldxb; i += 16) {
            size_t left = k > i ? k - i : 0, room = ldxb - i;
            __mmask16 lk = (__mmask16)(left >= 16 ? 0xFFFFu : (1u << left) - 1u);
            __mmask16 sk = (__mmask16)(room >= 16 ? 0xFFFFu : (1u << room) - 1u);
            /* lanes past k load as 0.0f, which rounds to bf16 0: the zero padding */
            _mm256_mask_storeu_epi16(d + i, sk, bf16x16_rne(_mm512_maskz_loadu_ps(lk, s + i)));
        }
    }
}

/* roundf (half away from zero) for lanes of t: trunc, then one step away from zero when |t - trunc| >= 0.5 (exact). */
CK_TARGET_AVX512 static inline __m512 round_half_away(__m512 t) {
    __m512 r = _mm512_roundscale_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m512 frac = _mm512_abs_ps(_mm512_sub_ps(t, r));
    __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(t), _mm512_set1_epi32((int)0x80000000u));
    __m512 one = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(_mm512_set1_ps(1.0f)), sign));
    return _mm512_mask_add_ps(r, up, r, one);
}

CK_TARGET_AVX512 static void prepare_q8_0_avx512(int8_t *xq, float *xd, const float *x, size_t ldx, size_t rows,
                                                 size_t k) {
    size_t nb = k / CK_Q8_0_BLOCK;
    for (size_t r = 0; r < rows; r++) {
        for (size_t b = 0; b < nb; b++) {
            const float *v = x + r * ldx + b * CK_Q8_0_BLOCK;
            __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16);
            __mmask16 nan = _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q);
            nan |= _mm512_cmp_ps_mask(v0, v0, _CMP_UNORD_Q);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            if (nan) amax = NAN; /* as the scalar loop: a NaN sticks */
            float d = amax / 127.0f;
            float id = (d != 0.0f && isfinite(d)) ? 1.0f / d : 0.0f;
            __m512 vid = _mm512_set1_ps(id);
            __m512 t0 = _mm512_mul_ps(v0, vid), t1 = _mm512_mul_ps(v1, vid);
            /* NaN lanes (NaN input, or inf * 0) become 0 */
            __m512i q0 = _mm512_maskz_cvttps_epi32(_mm512_cmp_ps_mask(t0, t0, _CMP_ORD_Q), round_half_away(t0));
            __m512i q1 = _mm512_maskz_cvttps_epi32(_mm512_cmp_ps_mask(t1, t1, _CMP_ORD_Q), round_half_away(t1));
            int8_t *q = xq + r * k + b * CK_Q8_0_BLOCK;
            _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(q1));
            xd[r * nb + b] = d;
        }
    }
}
#endif

void ck_lp_prepare_bf16(uint16_t *xb, size_t ldxb, const float *x, size_t ldx, size_t rows, size_t k) {
#if CK_X86
    if (ck_isa_active() >= CK_ISA_AVX512) { prepare_bf16_avx512(xb, ldxb, x, ldx, rows, k); return; }
#endif
    ck_lp_prepare_bf16_scalar(xb, ldxb, x, ldx, rows, k);
}

void ck_lp_prepare_q8_0(int8_t *xq, float *xd, const float *x, size_t ldx, size_t rows, size_t k) {
#if CK_X86
    if (ck_isa_active() >= CK_ISA_AVX512) { prepare_q8_0_avx512(xq, xd, x, ldx, rows, k); return; }
#endif
    ck_lp_prepare_q8_0_scalar(xq, xd, x, ldx, rows, k);
}

/* W rows per L2 panel: a multiple of TILE, at least TILE. */
static size_t panel_rows_for(size_t row_bytes) {
    size_t p = PANEL_BYTES / (row_bytes ? row_bytes : 1);
    p = p / TILE * TILE;
    return p < TILE ? TILE : p;
}

/* Stores a TILE x TILE block of results (rows mr, columns nr valid) plus bias. */
static inline void store_tile(const float acc[TILE][TILE], size_t mr, size_t nr, const float *bias, float *y,
                              size_t ldy, size_t i0, size_t j0) {
    for (size_t a = 0; a < mr; a++)
        for (size_t b = 0; b < nr; b++) y[(i0 + a) * ldy + j0 + b] = acc[a][b] + (bias ? bias[j0 + b] : 0.0f);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Scalar references                                                                                                */

static void gemm_bf16_scalar(const uint16_t *xb, size_t ldxb, size_t m, size_t k, const uint8_t *w,
                             size_t w_row_bytes, size_t n0, size_t n1, const float *bias, float *y, size_t ldy) {
    for (size_t i = 0; i < m; i++) {
        const uint16_t *xr = xb + i * ldxb;
        for (size_t n = n0; n < n1; n++) {
            const uint8_t *wr = w + n * w_row_bytes;
            float acc = 0;
            for (size_t kk = 0; kk < k; kk++) {
                uint16_t h;
                memcpy(&h, wr + 2 * kk, 2);
                acc += bf16_to_f32(xr[kk]) * bf16_to_f32(h); /* the product is exact in float32 */
            }
            y[i * ldy + n] = acc + (bias ? bias[n] : 0.0f);
        }
    }
}

static void gemm_q8_0_scalar(const int8_t *xq, const float *xd, size_t m, size_t k, const uint8_t *w,
                             size_t w_row_bytes, size_t n0, size_t n1, const float *bias, float *y, size_t ldy) {
    size_t nb = k / CK_Q8_0_BLOCK;
    for (size_t i = 0; i < m; i++) {
        for (size_t n = n0; n < n1; n++) {
            const uint8_t *wr = w + n * w_row_bytes;
            float acc = 0;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *blk = wr + b * CK_Q8_0_BYTES;
                uint16_t dh;
                memcpy(&dh, blk, 2);
                const int8_t *qw = (const int8_t *)(blk + 2);
                const int8_t *qx = xq + i * k + b * CK_Q8_0_BLOCK;
                int32_t isum = 0;
                for (int t = 0; t < CK_Q8_0_BLOCK; t++) isum += (int32_t)qx[t] * (int32_t)qw[t];
                acc += (xd[i * nb + b] * f16_to_f32(dh)) * (float)isum;
            }
            y[i * ldy + n] = acc + (bias ? bias[n] : 0.0f);
        }
    }
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* SIMD variants                                                                                                    */
#if CK_X86

CK_TARGET_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* Sums each of the 16 accumulators of a 4x4 tile: out[a][b] = sum of the lanes of acc[a][b]. A transpose-and-add
 * tree (45 operations instead of 16 full reductions, which matters for short k such as attention's head dim). */
CK_TARGET_AVX512 static inline void reduce_tile_avx512(__m512 acc[TILE][TILE], float out[TILE][TILE]) {
    __m512 v[TILE];
    for (int a = 0; a < TILE; a++) {
        __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(acc[a][0], acc[a][1]), _mm512_unpackhi_ps(acc[a][0], acc[a][1]));
        __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(acc[a][2], acc[a][3]), _mm512_unpackhi_ps(acc[a][2], acc[a][3]));
        /* per 128-bit lane: [b0, b1, b2, b3] partial sums */
        v[a] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23))));
    }
    __m512 u01 = _mm512_add_ps(_mm512_shuffle_f32x4(v[0], v[1], 0x44), _mm512_shuffle_f32x4(v[0], v[1], 0xEE));
    __m512 u23 = _mm512_add_ps(_mm512_shuffle_f32x4(v[2], v[3], 0x44), _mm512_shuffle_f32x4(v[2], v[3], 0xEE));
    __m512 r = _mm512_add_ps(_mm512_shuffle_f32x4(u01, u23, 0x88), _mm512_shuffle_f32x4(u01, u23, 0xDD));
    _mm512_storeu_ps(&out[0][0], r);
}

/* --- bf16, AVX512_BF16: 32 k per vdpbf16ps ---------------------------------------------------------------------- */
CK_TARGET_AVX512_BF16 static void bf16_tile_avx512(const uint16_t *const xr[TILE], const uint8_t *const wr[TILE],
                                                   size_t k, float out[TILE][TILE]) {
    __m512 acc[TILE][TILE];
    for (int a = 0; a < TILE; a++)
        for (int b = 0; b < TILE; b++) acc[a][b] = _mm512_setzero_ps();
    size_t kk = 0;
    for (; kk + 32 <= k; kk += 32) {
        __m512i xv[TILE], wv[TILE];
        for (int b = 0; b < TILE; b++) wv[b] = _mm512_loadu_si512((const void *)(wr[b] + 2 * kk));
        for (int a = 0; a < TILE; a++) xv[a] = _mm512_loadu_si512((const void *)(xr[a] + kk));
        for (int a = 0; a < TILE; a++)
            for (int b = 0; b < TILE; b++) acc[a][b] = _mm512_dpbf16_ps(acc[a][b], (__m512bh)xv[a], (__m512bh)wv[b]);
    }
    if (kk < k) { /* W rows end at k: masked loads; the activation rows are zero padded to 32 */
        __mmask32 mk = (__mmask32)((1ull << (k - kk)) - 1ull);
        __m512i xv[TILE], wv[TILE];
        for (int b = 0; b < TILE; b++) wv[b] = _mm512_maskz_loadu_epi16(mk, (const void *)(wr[b] + 2 * kk));
        for (int a = 0; a < TILE; a++) xv[a] = _mm512_maskz_loadu_epi16(mk, (const void *)(xr[a] + kk));
        for (int a = 0; a < TILE; a++)
            for (int b = 0; b < TILE; b++) acc[a][b] = _mm512_dpbf16_ps(acc[a][b], (__m512bh)xv[a], (__m512bh)wv[b]);
    }
    reduce_tile_avx512(acc, out);
}

/* --- bf16, AVX512_BF16, many activation rows: the classic broadcast form ----------------------------------------
 * A strip of 32 W rows is repacked once as k-pairs ([k/2][32][2] bf16: two vectors per pair), then every block of
 * 12 activation rows runs over it: per k pair, one broadcast of each row's pair and 24 vdpbf16ps into 12 x 2
 * accumulators of 16 outputs each, with no horizontal sums (short k, as attention's head dim, stays efficient).
 * The repacking costs O(32 k) per strip, so rows < BCAST_MIN_ROWS keep the dot form above, reading W in place. */
#define BCAST_ROWS 12
#define BCAST_COLS 32
#define BCAST_MIN_ROWS 16

static void bf16_pack_strip(uint16_t *bp, const uint8_t *w, size_t w_row_bytes, size_t j0, size_t nc, size_t k) {
    size_t kp = (k + 1) / 2;
    for (size_t c = 0; c < BCAST_COLS; c++) {
        uint16_t *d = bp + 2 * c;
        if (c >= nc) {
            for (size_t p = 0; p < kp; p++) d[p * 2 * BCAST_COLS] = d[p * 2 * BCAST_COLS + 1] = 0;
            continue;
        }
        const uint8_t *row = w + (j0 + c) * w_row_bytes;
        for (size_t t = 0; t + 1 < k; t += 2) {
            uint16_t h[2];
            memcpy(h, row + 2 * t, 4);
            d[(t / 2) * 2 * BCAST_COLS] = h[0];
            d[(t / 2) * 2 * BCAST_COLS + 1] = h[1];
        }
        if (k & 1) {
            uint16_t h;
            memcpy(&h, row + 2 * (k - 1), 2);
            d[(k / 2) * 2 * BCAST_COLS] = h;
            d[(k / 2) * 2 * BCAST_COLS + 1] = 0;
        }
    }
}

CK_TARGET_AVX512_BF16 static void bf16_bcast_tile(const uint16_t *const xr[BCAST_ROWS], const uint16_t *bp, size_t kp,
                                                  size_t mr, size_t nc, const float *bias, float *y, size_t ldy) {
    __m512 acc[BCAST_ROWS][2];
    for (int a = 0; a < BCAST_ROWS; a++) acc[a][0] = acc[a][1] = _mm512_setzero_ps();
    for (size_t p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)(bp + p * 2 * BCAST_COLS));
        __m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(bp + p * 2 * BCAST_COLS + BCAST_COLS));
        for (int a = 0; a < BCAST_ROWS; a++) {
            int32_t pair;
            memcpy(&pair, xr[a] + 2 * p, 4);
            __m512bh xa = (__m512bh)_mm512_set1_epi32(pair);
            acc[a][0] = _mm512_dpbf16_ps(acc[a][0], xa, b0);
            acc[a][1] = _mm512_dpbf16_ps(acc[a][1], xa, b1);
        }
    }
    __mmask16 m0 = (__mmask16)(nc >= 16 ? 0xFFFFu : (1u << nc) - 1u);
    __mmask16 m1 = (__mmask16)(nc >= 32 ? 0xFFFFu : nc > 16 ? (1u << (nc - 16)) - 1u : 0u);
    __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (size_t a = 0; a < mr; a++) {
        _mm512_mask_storeu_ps(y + a * ldy, m0, _mm512_add_ps(acc[a][0], bias0));
        _mm512_mask_storeu_ps(y + a * ldy + 16, m1, _mm512_add_ps(acc[a][1], bias1));
    }
}

/* Returns -1 when the strip buffer cannot be allocated (nothing written). */
static int gemm_bf16_bcast(const uint16_t *xb, size_t ldxb, size_t m, size_t k, const uint8_t *w, size_t w_row_bytes,
                           size_t n0, size_t n1, const float *bias, float *y, size_t ldy) {
    size_t kp = (k + 1) / 2;
    uint16_t *bp = aligned_alloc(64, kp * 2 * BCAST_COLS * sizeof(uint16_t));
    if (!bp) return -1;
    for (size_t j0 = n0; j0 < n1; j0 += BCAST_COLS) {
        size_t nc = n1 - j0 < BCAST_COLS ? n1 - j0 : BCAST_COLS;
        bf16_pack_strip(bp, w, w_row_bytes, j0, nc, k);
        for (size_t i0 = 0; i0 < m; i0 += BCAST_ROWS) {
            size_t mr = m - i0 < BCAST_ROWS ? m - i0 : BCAST_ROWS;
            const uint16_t *xr[BCAST_ROWS];
            for (size_t a = 0; a < BCAST_ROWS; a++) xr[a] = xb + (i0 + (a < mr ? a : 0)) * ldxb;
            bf16_bcast_tile(xr, bp, kp, mr, nc, bias ? bias + j0 : NULL, y + i0 * ldy + j0, ldy);
        }
    }
    free(bp);
    return 0;
}

/* --- bf16, AVX2: widen to float32 (shift by 16) and FMA, 8 k per step; 2 x 4 tiles fit the 16 registers ------- */
CK_TARGET_AVX2 static inline __m256 bf16x8_to_ps(const void *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

CK_TARGET_AVX2 static void bf16_tile_avx2(const uint16_t *const xr[TILE], const uint8_t *const wr[TILE], size_t k,
                                          float out[TILE][TILE]) {
    for (int half = 0; half < TILE; half += 2) {
        __m256 acc[2][TILE];
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < TILE; b++) acc[a][b] = _mm256_setzero_ps();
        size_t kk = 0;
        for (; kk + 8 <= k; kk += 8) {
            __m256 x0 = bf16x8_to_ps(xr[half] + kk), x1 = bf16x8_to_ps(xr[half + 1] + kk);
            for (int b = 0; b < TILE; b++) {
                __m256 wv = bf16x8_to_ps(wr[b] + 2 * kk);
                acc[0][b] = _mm256_fmadd_ps(x0, wv, acc[0][b]);
                acc[1][b] = _mm256_fmadd_ps(x1, wv, acc[1][b]);
            }
        }
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < TILE; b++) {
                float s = hsum8(acc[a][b]);
                for (size_t t = kk; t < k; t++) {
                    uint16_t h;
                    memcpy(&h, wr[b] + 2 * t, 2);
                    s += bf16_to_f32(xr[half + a][t]) * bf16_to_f32(h);
                }
                out[half + a][b] = s;
            }
    }
}

/* --- Q8_0, AVX512_VNNI: two blocks per 512-bit vector -------------------------------------------------------------
 * vpdpbusd multiplies unsigned by signed bytes. The activations (int8 in [-127, 127]) are offset to u = q + 128;
 * the accumulator starts at -128 * (sum of the w bytes of each lane), so each int32 lane ends with the exact sum of
 * q * w over its 4 byte pairs. Lanes 0-7 belong to block b, lanes 8-15 to block b + 1; they are scaled by dx * dw
 * of their block in float32 and summed along k.
 * Both operands are repacked so the inner loop is 4 vector operations per (row, column) pair and 2 blocks, all loads
 * aligned: a panel of W rows once per panel (pairs of blocks: 64 qs bytes, 16 int32 corrections, 16 scales), and
 * 4 activation rows once per row block (64 offset bytes, 16 scales). */
typedef struct { __m512i q; __m512i corr; __m512 d; } q8_wpair;
typedef struct { __m512i u; __m512 d; } q8_xpair;

CK_TARGET_AVX512_VNNI static inline __m512 two_scales(float lo, float hi) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(lo)),
                                               _mm256_castps_pd(_mm256_set1_ps(hi)), 1));
}

CK_TARGET_AVX512_VNNI static void q8_0_pack_w_vnni(q8_wpair *dst, const uint8_t *row, size_t nb) {
    const __m512i bias8 = _mm512_set1_epi8((char)0x80);
    for (size_t blk = 0, p = 0; blk < nb; blk += 2, p++) {
        int two = blk + 1 < nb;
        const uint8_t *q = row + blk * CK_Q8_0_BYTES;
        __m256i lo = _mm256_loadu_si256((const __m256i *)(q + 2));
        __m256i hi = two ? _mm256_loadu_si256((const __m256i *)(q + CK_Q8_0_BYTES + 2)) : _mm256_setzero_si256();
        __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        uint16_t h0, h1 = 0;
        memcpy(&h0, q, 2);
        if (two) memcpy(&h1, q + CK_Q8_0_BYTES, 2);
        dst[p].q = wv;
        dst[p].corr = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias8, wv));
        dst[p].d = two_scales(_cvtsh_ss(h0), two ? _cvtsh_ss(h1) : 0.0f);
    }
}

CK_TARGET_AVX512_VNNI static void q8_0_pack_x_vnni(q8_xpair *dst, const int8_t *q, const float *d, size_t nb) {
    const __m512i bias8 = _mm512_set1_epi8((char)0x80);
    for (size_t blk = 0, p = 0; blk < nb; blk += 2, p++) {
        int two = blk + 1 < nb;
        __m256i lo = _mm256_loadu_si256((const __m256i *)(q + blk * CK_Q8_0_BLOCK));
        __m256i hi = two ? _mm256_loadu_si256((const __m256i *)(q + (blk + 1) * CK_Q8_0_BLOCK)) : _mm256_setzero_si256();
        dst[p].u = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), bias8);
        dst[p].d = two_scales(d[blk], two ? d[blk + 1] : 0.0f);
    }
}

CK_TARGET_AVX512_VNNI static void q8_0_tile_vnni(const q8_xpair *const xr[TILE], const q8_wpair *const wr[TILE],
                                                 size_t np, float out[TILE][TILE]) {
    __m512 acc[TILE][TILE];
    for (int a = 0; a < TILE; a++)
        for (int b = 0; b < TILE; b++) acc[a][b] = _mm512_setzero_ps();
    for (size_t p = 0; p < np; p++) {
        __m512i xu[TILE];
        __m512 dx[TILE];
        for (int a = 0; a < TILE; a++) {
            xu[a] = xr[a][p].u;
            dx[a] = xr[a][p].d;
        }
        for (int b = 0; b < TILE; b++) {
            __m512i wv = wr[b][p].q, corr = wr[b][p].corr;
            for (int a = 0; a < TILE; a++) {
                __m512i dot = _mm512_dpbusd_epi32(corr, xu[a], wv);
                acc[a][b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dx[a], wr[b][p].d), acc[a][b]);
            }
        }
    }
    reduce_tile_avx512(acc, out);
}

/* Returns -1 when the packing buffers cannot be allocated (nothing written). */
static int gemm_q8_0_vnni(const int8_t *xq, const float *xd, size_t m, size_t k, const uint8_t *w,
                          size_t w_row_bytes, size_t n0, size_t n1, const float *bias, float *y, size_t ldy) {
    size_t nb = k / CK_Q8_0_BLOCK, np = (nb + 1) / 2;
    size_t pr = panel_rows_for(np * sizeof(q8_wpair));
    if (pr > n1 - n0) pr = (n1 - n0 + TILE - 1) / TILE * TILE;
    q8_wpair *wp = aligned_alloc(64, pr * np * sizeof(q8_wpair));
    q8_xpair *xp = aligned_alloc(64, TILE * np * sizeof(q8_xpair));
    if (!wp || !xp) {
        free(wp);
        free(xp);
        return -1;
    }
    for (size_t p0 = n0; p0 < n1; p0 += pr) {
        size_t p1 = p0 + pr < n1 ? p0 + pr : n1;
        for (size_t r = p0; r < p1; r++) q8_0_pack_w_vnni(wp + (r - p0) * np, w + r * w_row_bytes, nb);
        for (size_t i0 = 0; i0 < m; i0 += TILE) {
            size_t mr = m - i0 < TILE ? m - i0 : TILE;
            const q8_xpair *xr[TILE];
            for (size_t a = 0; a < TILE; a++) {
                if (a < mr) q8_0_pack_x_vnni(xp + a * np, xq + (i0 + a) * k, xd + (i0 + a) * nb, nb);
                xr[a] = xp + (a < mr ? a : 0) * np;
            }
            for (size_t j0 = p0; j0 < p1; j0 += TILE) {
                size_t nr = p1 - j0 < TILE ? p1 - j0 : TILE;
                const q8_wpair *wr[TILE];
                for (size_t b = 0; b < TILE; b++) wr[b] = wp + (j0 - p0 + (b < nr ? b : 0)) * np;
                float out[TILE][TILE];
                q8_0_tile_vnni(xr, wr, np, out);
                store_tile(out, mr, nr, bias, y, ldy, i0, j0);
            }
        }
    }
    free(wp);
    free(xp);
    return 0;
}

/* --- Q8_0, AVX512_VNNI, many activation rows: broadcast form ------------------------------------------------------
 * A strip of 32 W rows is repacked per block as 8 groups of [32 columns][4 bytes] (two vectors per group), with each
 * column's correction -128 * sum(qs) and its scale as float. For 6 activation rows at a time (offset to u = q + 128
 * once per strip), each group is one broadcast of 4 activation bytes per row and vpdpbusd into 6 x 2 integer
 * accumulators started at the correction, so after 8 groups each lane holds a block's exact integer dot; it is
 * scaled by dx * dw in float32 (one FMA) and summed over blocks in block order. */
#define Q8B_ROWS 6

typedef struct {
    int8_t qs[8][BCAST_COLS][4];
    int32_t corr[BCAST_COLS];
    float d[BCAST_COLS];
} q8_strip_block;

static void q8_0_pack_strip(q8_strip_block *sp, const uint8_t *w, size_t w_row_bytes, size_t j0, size_t nc,
                            size_t nb) {
    for (size_t b = 0; b < nb; b++) {
        q8_strip_block *blk = sp + b;
        for (size_t c = 0; c < BCAST_COLS; c++) {
            if (c >= nc) {
                for (int g = 0; g < 8; g++) memset(blk->qs[g][c], 0, 4);
                blk->corr[c] = 0;
                blk->d[c] = 0;
                continue;
            }
            const uint8_t *src = w + (j0 + c) * w_row_bytes + b * CK_Q8_0_BYTES;
            uint16_t h;
            memcpy(&h, src, 2);
            int32_t sum = 0;
            for (int g = 0; g < 8; g++) {
                memcpy(blk->qs[g][c], src + 2 + 4 * g, 4);
                for (int t = 0; t < 4; t++) sum += blk->qs[g][c][t];
            }
            blk->corr[c] = -128 * sum;
            blk->d[c] = f16_to_f32(h);
        }
    }
}

CK_TARGET_AVX512_VNNI static void q8_0_bcast_tile(const uint8_t *const xu[Q8B_ROWS], const float *const xd[Q8B_ROWS],
                                                  const q8_strip_block *sp, size_t nb, size_t mr, size_t nc,
                                                  const float *bias, float *y, size_t ldy) {
    __m512 acc[Q8B_ROWS][2];
    for (int a = 0; a < Q8B_ROWS; a++) acc[a][0] = acc[a][1] = _mm512_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        const q8_strip_block *blk = sp + b;
        __m512i c0 = _mm512_load_si512((const void *)blk->corr), c1 = _mm512_load_si512((const void *)(blk->corr + 16));
        __m512i dot[Q8B_ROWS][2];
        for (int a = 0; a < Q8B_ROWS; a++) {
            dot[a][0] = c0;
            dot[a][1] = c1;
        }
        for (int g = 0; g < 8; g++) {
            __m512i w0 = _mm512_load_si512((const void *)blk->qs[g][0]);
            __m512i w1 = _mm512_load_si512((const void *)blk->qs[g][16]);
            for (int a = 0; a < Q8B_ROWS; a++) {
                int32_t quad;
                memcpy(&quad, xu[a] + b * CK_Q8_0_BLOCK + 4 * g, 4);
                __m512i xa = _mm512_set1_epi32(quad);
                dot[a][0] = _mm512_dpbusd_epi32(dot[a][0], xa, w0);
                dot[a][1] = _mm512_dpbusd_epi32(dot[a][1], xa, w1);
            }
        }
        __m512 d0 = _mm512_load_ps(blk->d), d1 = _mm512_load_ps(blk->d + 16);
        for (int a = 0; a < Q8B_ROWS; a++) {
            __m512 dx = _mm512_set1_ps(xd[a][b]);
            acc[a][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[a][0]), _mm512_mul_ps(dx, d0), acc[a][0]);
            acc[a][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[a][1]), _mm512_mul_ps(dx, d1), acc[a][1]);
        }
    }
    __mmask16 m0 = (__mmask16)(nc >= 16 ? 0xFFFFu : (1u << nc) - 1u);
    __mmask16 m1 = (__mmask16)(nc >= 32 ? 0xFFFFu : nc > 16 ? (1u << (nc - 16)) - 1u : 0u);
    __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (size_t a = 0; a < mr; a++) {
        _mm512_mask_storeu_ps(y + a * ldy, m0, _mm512_add_ps(acc[a][0], bias0));
        _mm512_mask_storeu_ps(y + a * ldy + 16, m1, _mm512_add_ps(acc[a][1], bias1));
    }
}

/* xu[i] = xq[i] + 128 as an unsigned byte (the vpdpbusd operand), 64 bytes per step. */
CK_TARGET_AVX512_VNNI static void q8_0_offset_rows(uint8_t *xu, const int8_t *xq, size_t n) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        _mm512_storeu_si512((void *)(xu + i), _mm512_xor_si512(_mm512_loadu_si512((const void *)(xq + i)), flip));
    for (; i < n; i++) xu[i] = (uint8_t)(xq[i] ^ (int8_t)0x80);
}

/* Returns -1 when the strip buffers cannot be allocated (nothing written). */
static int gemm_q8_0_bcast(const int8_t *xq, const float *xd, size_t m, size_t k, const uint8_t *w,
                           size_t w_row_bytes, size_t n0, size_t n1, const float *bias, float *y, size_t ldy) {
    size_t nb = k / CK_Q8_0_BLOCK;
    q8_strip_block *sp = aligned_alloc(64, nb * sizeof(q8_strip_block));
    /* All activation rows offset to unsigned (u = q + 128) once per call, not once per strip of W. */
    uint8_t *xu = aligned_alloc(64, (m * k + 63) / 64 * 64);
    if (!sp || !xu) {
        free(sp);
        free(xu);
        return -1;
    }
    q8_0_offset_rows(xu, xq, m * k);
    for (size_t j0 = n0; j0 < n1; j0 += BCAST_COLS) {
        size_t nc = n1 - j0 < BCAST_COLS ? n1 - j0 : BCAST_COLS;
        q8_0_pack_strip(sp, w, w_row_bytes, j0, nc, nb);
        for (size_t i0 = 0; i0 < m; i0 += Q8B_ROWS) {
            size_t mr = m - i0 < Q8B_ROWS ? m - i0 : Q8B_ROWS;
            const uint8_t *xr[Q8B_ROWS];
            const float *dr[Q8B_ROWS];
            for (size_t a = 0; a < Q8B_ROWS; a++) {
                size_t row = a < mr ? a : 0;
                xr[a] = xu + (i0 + row) * k;
                dr[a] = xd + (i0 + row) * nb;
            }
            q8_0_bcast_tile(xr, dr, sp, nb, mr, nc, bias ? bias + j0 : NULL, y + i0 * ldy + j0, ldy);
        }
    }
    free(sp);
    free(xu);
    return 0;
}

/* --- Q8_0, AVX2: one block per 256-bit vector; maddubs needs an unsigned operand: |w| (0..128 fits a byte) times
 * x with w's sign (x is in [-127, 127], so negating it cannot overflow); pairs sum to at most 2*128*127 < 2^15. */
CK_TARGET_AVX2 static void q8_0_tile_avx2(const int8_t *const xq[TILE], const float *const xd[TILE],
                                          const uint8_t *const wr[TILE], size_t nb, float out[TILE][TILE]) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int half = 0; half < TILE; half += 2) {
        __m256 acc[2][TILE];
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < TILE; b++) acc[a][b] = _mm256_setzero_ps();
        for (size_t blk = 0; blk < nb; blk++) {
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq[half] + blk * CK_Q8_0_BLOCK));
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xq[half + 1] + blk * CK_Q8_0_BLOCK));
            __m256 d0 = _mm256_set1_ps(xd[half][blk]), d1 = _mm256_set1_ps(xd[half + 1][blk]);
            for (int b = 0; b < TILE; b++) {
                const uint8_t *p = wr[b] + blk * CK_Q8_0_BYTES;
                __m256i wv = _mm256_loadu_si256((const __m256i *)(p + 2));
                __m256i aw = _mm256_abs_epi8(wv);
                uint16_t h;
                memcpy(&h, p, 2);
                __m256 dw = _mm256_set1_ps(_cvtsh_ss(h));
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x0, wv)), ones);
                __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x1, wv)), ones);
                acc[0][b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_mul_ps(d0, dw), acc[0][b]);
                acc[1][b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_mul_ps(d1, dw), acc[1][b]);
            }
        }
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < TILE; b++) out[half + a][b] = hsum8(acc[a][b]);
    }
}
#endif

/* ---------------------------------------------------------------------------------------------------------------- */
/* Drivers: panels of W rows, 4-row activation blocks, 4-row W groups.                                            */


typedef enum { LP_SCALAR, LP_AVX2, LP_AVX512 } lp_variant;

static lp_variant bf16_variant(ck_isa isa) {
    ck_isa best = ck_isa_detect();
    if (isa > best) isa = best;
    if (isa >= CK_ISA_AVX512 && ck_cpu_has_avx512_bf16()) return LP_AVX512;
    if (isa >= CK_ISA_AVX2) return LP_AVX2;
    return LP_SCALAR;
}
static lp_variant q8_0_variant(ck_isa isa) {
    ck_isa best = ck_isa_detect();
    if (isa > best) isa = best;
    if (isa >= CK_ISA_AVX512 && ck_cpu_has_avx512_vnni()) return LP_AVX512;
    if (isa >= CK_ISA_AVX2) return LP_AVX2;
    return LP_SCALAR;
}
const char *ck_lp_bf16_variant(ck_isa isa) {
    switch (bf16_variant(isa)) {
    case LP_AVX512: return "avx512-bf16";
    case LP_AVX2: return "avx2";
    default: return "scalar";
    }
}
const char *ck_lp_q8_0_variant(ck_isa isa) {
    switch (q8_0_variant(isa)) {
    case LP_AVX512: return "avx512-vnni";
    case LP_AVX2: return "avx2";
    default: return "scalar";
    }
}

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

#if CK_X86
typedef void (*bf16_tile_fn)(const uint16_t *const xr[TILE], const uint8_t *const wr[TILE], size_t k,
                             float out[TILE][TILE]);
typedef void (*q8_0_tile_fn)(const int8_t *const xq[TILE], const float *const xd[TILE],
                             const uint8_t *const wr[TILE], size_t nb, float out[TILE][TILE]);

static void gemm_bf16_tiled(bf16_tile_fn tile, const uint16_t *xb, size_t ldxb, size_t m, size_t k,
                            const uint8_t *w, size_t w_row_bytes, size_t n0, size_t n1, const float *bias, float *y,
                            size_t ldy) {
    size_t pr = panel_rows_for(k * 2);
    for (size_t p0 = n0; p0 < n1; p0 += pr) {
        size_t p1 = min_sz(n1, p0 + pr);
        for (size_t i0 = 0; i0 < m; i0 += TILE) {
            size_t mr = min_sz(TILE, m - i0);
            const uint16_t *xr[TILE];
            for (size_t a = 0; a < TILE; a++) xr[a] = xb + (i0 + (a < mr ? a : 0)) * ldxb;
            for (size_t j0 = p0; j0 < p1; j0 += TILE) {
                size_t nr = min_sz(TILE, p1 - j0);
                const uint8_t *wr[TILE];
                for (size_t b = 0; b < TILE; b++) wr[b] = w + (j0 + (b < nr ? b : 0)) * w_row_bytes;
                float out[TILE][TILE];
                tile(xr, wr, k, out);
                store_tile(out, mr, nr, bias, y, ldy, i0, j0);
            }
        }
    }
}

static void gemm_q8_0_tiled(q8_0_tile_fn tile, const int8_t *xq, const float *xd, size_t m, size_t k,
                            const uint8_t *w, size_t w_row_bytes, size_t n0, size_t n1, const float *bias, float *y,
                            size_t ldy) {
    size_t nb = k / CK_Q8_0_BLOCK;
    size_t pr = panel_rows_for(nb * CK_Q8_0_BYTES);
    for (size_t p0 = n0; p0 < n1; p0 += pr) {
        size_t p1 = min_sz(n1, p0 + pr);
        for (size_t i0 = 0; i0 < m; i0 += TILE) {
            size_t mr = min_sz(TILE, m - i0);
            const int8_t *xr[TILE];
            const float *dr[TILE];
            for (size_t a = 0; a < TILE; a++) {
                size_t row = i0 + (a < mr ? a : 0);
                xr[a] = xq + row * k;
                dr[a] = xd + row * nb;
            }
            for (size_t j0 = p0; j0 < p1; j0 += TILE) {
                size_t nr = min_sz(TILE, p1 - j0);
                const uint8_t *wr[TILE];
                for (size_t b = 0; b < TILE; b++) wr[b] = w + (j0 + (b < nr ? b : 0)) * w_row_bytes;
                float out[TILE][TILE];
                tile(xr, dr, wr, nb, out);
                store_tile(out, mr, nr, bias, y, ldy, i0, j0);
            }
        }
    }
}
#endif

void ck_lp_gemm_bf16(const uint16_t *xb, size_t ldxb, size_t m, size_t k, const void *w, size_t w_row_bytes,
                     size_t n0, size_t n1, const float *bias, float *y, size_t ldy, ck_isa isa) {
    if (m == 0 || n1 <= n0) return;
    const uint8_t *wb = (const uint8_t *)w;
#if CK_X86
    switch (bf16_variant(isa)) {
    case LP_AVX512:
        if (m >= BCAST_MIN_ROWS && gemm_bf16_bcast(xb, ldxb, m, k, wb, w_row_bytes, n0, n1, bias, y, ldy) == 0) return;
        gemm_bf16_tiled(bf16_tile_avx512, xb, ldxb, m, k, wb, w_row_bytes, n0, n1, bias, y, ldy);
        return;
    case LP_AVX2: gemm_bf16_tiled(bf16_tile_avx2, xb, ldxb, m, k, wb, w_row_bytes, n0, n1, bias, y, ldy); return;
    default: break;
    }
#endif
    gemm_bf16_scalar(xb, ldxb, m, k, wb, w_row_bytes, n0, n1, bias, y, ldy);
}

void ck_lp_gemm_q8_0(const int8_t *xq, const float *xd, size_t m, size_t k, const void *w, size_t w_row_bytes,
                     size_t n0, size_t n1, const float *bias, float *y, size_t ldy, ck_isa isa) {
    if (m == 0 || n1 <= n0) return;
    const uint8_t *wb = (const uint8_t *)w;
#if CK_X86
    switch (q8_0_variant(isa)) {
    case LP_AVX512:
        if (m >= BCAST_MIN_ROWS && gemm_q8_0_bcast(xq, xd, m, k, wb, w_row_bytes, n0, n1, bias, y, ldy) == 0) return;
        if (gemm_q8_0_vnni(xq, xd, m, k, wb, w_row_bytes, n0, n1, bias, y, ldy) == 0) return;
        break; /* no memory for the packed panels: the reference still gives the answer */
    case LP_AVX2: gemm_q8_0_tiled(q8_0_tile_avx2, xq, xd, m, k, wb, w_row_bytes, n0, n1, bias, y, ldy); return;
    default: break;
    }
#endif
    gemm_q8_0_scalar(xq, xd, m, k, wb, w_row_bytes, n0, n1, bias, y, ldy);
}

void ck_lp_dequant_panel_f32(float *panel, const void *w, size_t w_row_bytes, size_t k,
                             ck_dequant_row_fn dequant_row, size_t r0, size_t rows) {
    const uint8_t *wb = (const uint8_t *)w;
    for (size_t r = 0; r < rows; r++) dequant_row(wb + (r0 + r) * w_row_bytes, panel + r * k, (int64_t)k);
}

int ck_lp_gemm_dequant_bf16(const uint16_t *xb, size_t ldxb, size_t m, size_t k, const void *w,
                            size_t w_row_bytes, ck_dequant_row_fn dequant_row, size_t panel_rows, size_t n0,
                            size_t n1, const float *bias, float *y, size_t ldy, ck_isa isa) {
    if (m == 0 || n1 <= n0) return 0;
    if (panel_rows < TILE) panel_rows = TILE;
    uint16_t *panel = malloc(panel_rows * ldxb * sizeof(uint16_t) + 1);
    float *row = malloc((k ? k : 1) * sizeof(float));
    if (!panel || !row) {
        free(panel);
        free(row);
        return -1;
    }
    for (size_t p0 = n0; p0 < n1; p0 += panel_rows) {
        size_t rows = min_sz(panel_rows, n1 - p0);
        for (size_t r = 0; r < rows; r++) {
            ck_lp_dequant_panel_f32(row, w, w_row_bytes, k, dequant_row, p0 + r, 1);
            ck_lp_prepare_bf16(panel + r * ldxb, ldxb, row, k, 1, k);
        }
        ck_lp_gemm_bf16(xb, ldxb, m, k, panel, ldxb * sizeof(uint16_t), 0, rows, bias ? bias + p0 : NULL, y + p0,
                        ldy, isa);
    }
    free(panel);
    free(row);
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Row dequantizers for the generic path (plain C function pointers, one per type).                                */

#define CK_LP_DEQUANT_ROW(name, type)                                                                              \
    static void name(const void *src, float *dst, int64_t n) { ck_dequantize_row(type, src, dst, n); }
CK_LP_DEQUANT_ROW(dq_f16, CK_GGML_F16)
CK_LP_DEQUANT_ROW(dq_bf16, CK_GGML_BF16)
CK_LP_DEQUANT_ROW(dq_q4_0, CK_GGML_Q4_0)
CK_LP_DEQUANT_ROW(dq_q4_1, CK_GGML_Q4_1)
CK_LP_DEQUANT_ROW(dq_q5_0, CK_GGML_Q5_0)
CK_LP_DEQUANT_ROW(dq_q5_1, CK_GGML_Q5_1)
CK_LP_DEQUANT_ROW(dq_q8_0, CK_GGML_Q8_0)
CK_LP_DEQUANT_ROW(dq_q2_k, CK_GGML_Q2_K)
CK_LP_DEQUANT_ROW(dq_q3_k, CK_GGML_Q3_K)
CK_LP_DEQUANT_ROW(dq_q4_k, CK_GGML_Q4_K)
CK_LP_DEQUANT_ROW(dq_q5_k, CK_GGML_Q5_K)
CK_LP_DEQUANT_ROW(dq_q6_k, CK_GGML_Q6_K)

ck_dequant_row_fn ck_lp_row_dequantizer(int ggml_type) {
    switch (ggml_type) {
    case CK_GGML_F16: return dq_f16;
    case CK_GGML_BF16: return dq_bf16;
    case CK_GGML_Q4_0: return dq_q4_0;
    case CK_GGML_Q4_1: return dq_q4_1;
    case CK_GGML_Q5_0: return dq_q5_0;
    case CK_GGML_Q5_1: return dq_q5_1;
    case CK_GGML_Q8_0: return dq_q8_0;
    case CK_GGML_Q2_K: return dq_q2_k;
    case CK_GGML_Q3_K: return dq_q3_k;
    case CK_GGML_Q4_K: return dq_q4_k;
    case CK_GGML_Q5_K: return dq_q5_k;
    case CK_GGML_Q6_K: return dq_q6_k;
    default: return NULL;
    }
}

void ck_lp_dequant_row_fp8_e4m3(const void *src, float *dst, int64_t n) {
    ck_dequantize_row_fp8_e4m3((const uint8_t *)src, dst, n, 1.0f);
}

void ck_lp_dequant_row_fp8_e5m2(const void *src, float *dst, int64_t n) {
    ck_dequantize_row_fp8_e5m2((const uint8_t *)src, dst, n, 1.0f);
}
