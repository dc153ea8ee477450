/* GGUF block-type and FP8 row dequantizers (see ck_quants.h). Scalar references first, then AVX2 / AVX-512
 * variants of the hot ones (Q8_0, Q4_K, Q6_K), then the dispatcher.
 *
 * Bit-exactness with gguf.quants (numpy, float32): each value is computed with the same float32 operations in the
 * same order as numpy (e.g. Q4_K: `(d*sc) * q - (dmin*m)`), and contraction into FMAs is off for this file, so the
 * SIMD variants, which use separate multiply and subtract instructions, give the same bits as the scalar code. */
#include "internal.h"
#include <string.h>

#pragma STDC FP_CONTRACT OFF

#define QK 32
#define QK_K 256

/* ---------------------------------------------------------------------------------------------------------------- */
/* Block sizes                                                                                                      */

int64_t ck_qtype_block_size(int t) {
    switch (t) {
    case CK_GGML_F32: case CK_GGML_F16: case CK_GGML_BF16: return 1;
    case CK_GGML_Q4_0: case CK_GGML_Q4_1: case CK_GGML_Q5_0: case CK_GGML_Q5_1: case CK_GGML_Q8_0: return QK;
    case CK_GGML_Q2_K: case CK_GGML_Q3_K: case CK_GGML_Q4_K: case CK_GGML_Q5_K: case CK_GGML_Q6_K: return QK_K;
    default: return 0;
    }
}

int64_t ck_qtype_block_bytes(int t) {
    switch (t) {
    case CK_GGML_F32: return 4;
    case CK_GGML_F16: case CK_GGML_BF16: return 2;
    case CK_GGML_Q4_0: return 2 + QK / 2;                             /* d, qs[16] */
    case CK_GGML_Q4_1: return 2 + 2 + QK / 2;                         /* d, m, qs[16] */
    case CK_GGML_Q5_0: return 2 + 4 + QK / 2;                         /* d, qh[4], qs[16] */
    case CK_GGML_Q5_1: return 2 + 2 + 4 + QK / 2;                     /* d, m, qh[4], qs[16] */
    case CK_GGML_Q8_0: return 2 + QK;                                 /* d, qs[32] */
    case CK_GGML_Q2_K: return QK_K / 16 + QK_K / 4 + 2 + 2;           /* scales[16], qs[64], d, dmin */
    case CK_GGML_Q3_K: return QK_K / 8 + QK_K / 4 + 12 + 2;           /* hmask[32], qs[64], scales[12], d */
    case CK_GGML_Q4_K: return 2 + 2 + 12 + QK_K / 2;                  /* d, dmin, scales[12], qs[128] */
    case CK_GGML_Q5_K: return 2 + 2 + 12 + QK_K / 8 + QK_K / 2;       /* d, dmin, scales[12], qh[32], qs[128] */
    case CK_GGML_Q6_K: return QK_K / 2 + QK_K / 4 + QK_K / 16 + 2;    /* ql[128], qh[64], scales[16], d */
    default: return 0;
    }
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Helpers                                                                                                          */

static inline uint16_t rd16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline float rdhalf(const uint8_t *p) { return ck_half_to_float(rd16(p)); }

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block (ggml's get_scale_min_k4). */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Scalar references                                                                                                */

void ck_dequantize_row_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

void ck_dequantize_row_f16(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = rdhalf(s + 2 * i);
}

void ck_dequantize_row_bf16(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)rd16(s + 2 * i) << 16;
        memcpy(dst + i, &bits, 4);
    }
}

void ck_dequantize_row_q4_0(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 18, dst += QK) {
        const float d = rdhalf(b);
        const uint8_t *qs = b + 2;
        for (int j = 0; j < QK / 2; j++) {
            dst[j] = d * (float)((qs[j] & 0xF) - 8);
            dst[j + QK / 2] = d * (float)((qs[j] >> 4) - 8);
        }
    }
}

void ck_dequantize_row_q4_1(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 20, dst += QK) {
        const float d = rdhalf(b), m = rdhalf(b + 2);
        const uint8_t *qs = b + 4;
        for (int j = 0; j < QK / 2; j++) {
            dst[j] = d * (float)(qs[j] & 0xF) + m;
            dst[j + QK / 2] = d * (float)(qs[j] >> 4) + m;
        }
    }
}

void ck_dequantize_row_q5_0(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 22, dst += QK) {
        const float d = rdhalf(b);
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        const uint8_t *qs = b + 6;
        for (int j = 0; j < QK / 2; j++) {
            const int x0 = (qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
            const int x1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            dst[j] = d * (float)(x0 - 16);
            dst[j + QK / 2] = d * (float)(x1 - 16);
        }
    }
}

void ck_dequantize_row_q5_1(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 24, dst += QK) {
        const float d = rdhalf(b), m = rdhalf(b + 2);
        uint32_t qh;
        memcpy(&qh, b + 4, 4);
        const uint8_t *qs = b + 8;
        for (int j = 0; j < QK / 2; j++) {
            const int x0 = (qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
            const int x1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            dst[j] = d * (float)x0 + m;
            dst[j + QK / 2] = d * (float)x1 + m;
        }
    }
}

void ck_dequantize_row_q8_0(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 34, dst += QK) {
        const float d = rdhalf(b);
        const int8_t *qs = (const int8_t *)(b + 2);
        for (int j = 0; j < QK; j++) dst[j] = (float)qs[j] * d;
    }
}

void ck_dequantize_row_q2_k(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 84) {
        const uint8_t *scales = b, *q = b + 16;
        const float d = rdhalf(b + 80), dmin = rdhalf(b + 82);
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int g = 0; g < 2; g++, is++) {
                    const float dl = d * (float)(scales[is] & 0xF), ml = dmin * (float)(scales[is] >> 4);
                    for (int l = 0; l < 16; l++) *dst++ = dl * (float)((q[16 * g + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

void ck_dequantize_row_q3_k(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 110) {
        const uint8_t *hm = b, *q = b + 32, *sc = b + 96;
        const float d = rdhalf(b + 108);
        int8_t scales[16];
        for (int j = 0; j < 16; j++) {
            const int lo = j < 8 ? (sc[j] & 0xF) : (sc[j - 8] >> 4);
            const int hi = (sc[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
            scales[j] = (int8_t)((lo | (hi << 4)) - 32);
        }
        int is = 0, bit = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, bit++) {
                for (int g = 0; g < 2; g++, is++) {
                    const float dl = d * (float)scales[is];
                    for (int l = 16 * g; l < 16 * g + 16; l++) {
                        const int v = ((q[l] >> shift) & 3) - (((hm[l] >> bit) & 1) ? 0 : 4);
                        *dst++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

void ck_dequantize_row_q4_k(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 144) {
        const float d = rdhalf(b), dmin = rdhalf(b + 2);
        const uint8_t *scales = b + 4, *q = b + 16;
        for (int j = 0; j < 4; j++, q += 32) {
            uint8_t sc, m;
            scale_min_k4(2 * j, scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min_k4(2 * j + 1, scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void ck_dequantize_row_q5_k(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 176) {
        const float d = rdhalf(b), dmin = rdhalf(b + 2);
        const uint8_t *scales = b + 4, *qh = b + 16, *q = b + 48;
        for (int j = 0; j < 4; j++, q += 32) {
            uint8_t sc, m;
            scale_min_k4(2 * j, scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min_k4(2 * j + 1, scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (float)((q[l] & 0xF) | (((qh[l] >> (2 * j)) & 1) << 4)) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (float)((q[l] >> 4) | (((qh[l] >> (2 * j + 1)) & 1) << 4)) - m2;
        }
    }
}

void ck_dequantize_row_q6_k(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = rdhalf(b + 208);
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, dst += 128) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                dst[l] = (d * (float)sc[is]) * (float)q1;
                dst[l + 32] = (d * (float)sc[is + 2]) * (float)q2;
                dst[l + 64] = (d * (float)sc[is + 4]) * (float)q3;
                dst[l + 96] = (d * (float)sc[is + 6]) * (float)q4;
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* FP8                                                                                                              */

static float g_e4m3[256], g_e5m2[256];

static float fp8_value(uint32_t b, int exp_bits, int man_bits, int bias, int has_inf) {
    const uint32_t sign = (b >> 7) << 31;
    const uint32_t e = (b >> man_bits) & ((1u << exp_bits) - 1), m = b & ((1u << man_bits) - 1);
    const uint32_t emax = (1u << exp_bits) - 1;
    uint32_t bits;
    if (has_inf ? e == emax : (e == emax && m == (1u << man_bits) - 1)) {
        bits = sign | ((has_inf && m == 0) ? 0x7F800000u : 0x7FC00000u); /* inf, or the canonical quiet NaN */
    } else if (e == 0) {
        float v = (float)m; /* subnormal: m * 2^(1 - bias - man_bits), exact */
        for (int k = 0; k < bias - 1 + man_bits; k++) v *= 0.5f;
        memcpy(&bits, &v, 4);
        bits |= sign;
    } else {
        bits = sign | ((e - (uint32_t)bias + 127u) << 23) | (m << (23 - man_bits));
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

__attribute__((constructor)) static void fp8_tables_init(void) {
    for (uint32_t b = 0; b < 256; b++) {
        g_e4m3[b] = fp8_value(b, 4, 3, 7, 0);
        g_e5m2[b] = fp8_value(b, 5, 2, 15, 1);
    }
}

static void fp8_row(const float *table, const uint8_t *src, float *dst, int64_t n, float scale) {
    if (scale == 1.0f) {
        for (int64_t i = 0; i < n; i++) dst[i] = table[src[i]];
    } else {
        for (int64_t i = 0; i < n; i++) dst[i] = table[src[i]] * scale;
    }
}
void ck_dequantize_row_fp8_e4m3(const uint8_t *src, float *dst, int64_t n, float scale) {
    fp8_row(g_e4m3, src, dst, n, scale);
}
void ck_dequantize_row_fp8_e5m2(const uint8_t *src, float *dst, int64_t n, float scale) {
    fp8_row(g_e5m2, src, dst, n, scale);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* SIMD variants                                                                                                    */

#if CK_X86
CK_TARGET_AVX512 static void q8_0_avx512(const uint8_t *b, float *dst, int64_t n) {
    for (int64_t i = 0; i < n / QK; i++, b += 34, dst += QK) {
        const __m512 d = _mm512_set1_ps(rdhalf(b));
        const __m128i q0 = _mm_loadu_si128((const __m128i *)(b + 2));
        const __m128i q1 = _mm_loadu_si128((const __m128i *)(b + 18));
        _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), d));
        _mm512_storeu_ps(dst + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), d));
    }
}
CK_TARGET_AVX2 static void q8_0_avx2(const uint8_t *b, float *dst, int64_t n) {
    for (int64_t i = 0; i < n / QK; i++, b += 34, dst += QK) {
        const __m256 d = _mm256_set1_ps(rdhalf(b));
        for (int k = 0; k < 4; k++) {
            const __m128i q = _mm_loadl_epi64((const __m128i *)(b + 2 + 8 * k));
            _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d));
        }
    }
}

CK_TARGET_AVX512 static void q4_k_avx512(const uint8_t *b, float *dst, int64_t n) {
    const __m512i lo = _mm512_set1_epi32(0xF);
    for (int64_t i = 0; i < n / QK_K; i++, b += 144) {
        const float d = rdhalf(b), dmin = rdhalf(b + 2);
        const uint8_t *scales = b + 4, *q = b + 16;
        for (int j = 0; j < 4; j++, q += 32, dst += 64) {
            uint8_t sc, m;
            scale_min_k4(2 * j, scales, &sc, &m);
            const __m512 d1 = _mm512_set1_ps(d * (float)sc), m1 = _mm512_set1_ps(dmin * (float)m);
            scale_min_k4(2 * j + 1, scales, &sc, &m);
            const __m512 d2 = _mm512_set1_ps(d * (float)sc), m2 = _mm512_set1_ps(dmin * (float)m);
            for (int h = 0; h < 2; h++) {
                const __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + 16 * h)));
                const __m512 x0 = _mm512_cvtepi32_ps(_mm512_and_si512(w, lo));
                const __m512 x1 = _mm512_cvtepi32_ps(_mm512_srli_epi32(w, 4));
                _mm512_storeu_ps(dst + 16 * h, _mm512_sub_ps(_mm512_mul_ps(d1, x0), m1));
                _mm512_storeu_ps(dst + 32 + 16 * h, _mm512_sub_ps(_mm512_mul_ps(d2, x1), m2));
            }
        }
    }
}
CK_TARGET_AVX2 static void q4_k_avx2(const uint8_t *b, float *dst, int64_t n) {
    const __m256i lo = _mm256_set1_epi32(0xF);
    for (int64_t i = 0; i < n / QK_K; i++, b += 144) {
        const float d = rdhalf(b), dmin = rdhalf(b + 2);
        const uint8_t *scales = b + 4, *q = b + 16;
        for (int j = 0; j < 4; j++, q += 32, dst += 64) {
            uint8_t sc, m;
            scale_min_k4(2 * j, scales, &sc, &m);
            const __m256 d1 = _mm256_set1_ps(d * (float)sc), m1 = _mm256_set1_ps(dmin * (float)m);
            scale_min_k4(2 * j + 1, scales, &sc, &m);
            const __m256 d2 = _mm256_set1_ps(d * (float)sc), m2 = _mm256_set1_ps(dmin * (float)m);
            for (int h = 0; h < 4; h++) {
                const __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + 8 * h)));
                const __m256 x0 = _mm256_cvtepi32_ps(_mm256_and_si256(w, lo));
                const __m256 x1 = _mm256_cvtepi32_ps(_mm256_srli_epi32(w, 4));
                _mm256_storeu_ps(dst + 8 * h, _mm256_sub_ps(_mm256_mul_ps(d1, x0), m1));
                _mm256_storeu_ps(dst + 32 + 8 * h, _mm256_sub_ps(_mm256_mul_ps(d2, x1), m2));
            }
        }
    }
}

/* Q6_K: 16 consecutive outputs share one scale; q = (4 low bits from ql >> lshift) | (2 high bits from qh >> hshift). */
CK_TARGET_AVX512 static void q6_k_avx512(const uint8_t *b, float *dst, int64_t n) {
    const __m512i m4 = _mm512_set1_epi32(0xF), m2 = _mm512_set1_epi32(3), k32 = _mm512_set1_epi32(32);
    for (int64_t i = 0; i < n / QK_K; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = rdhalf(b + 208);
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, dst += 128) {
            for (int k = 0; k < 4; k++) {          /* output quarter: l + 32k */
                const uint8_t *qlk = ql + (k & 1) * 32;
                const int lshift = (k >> 1) * 4, hshift = 2 * k;
                for (int g = 0; g < 2; g++) {      /* 16 outputs with scale sc[g + 2k] */
                    const __m512 s = _mm512_set1_ps(d * (float)sc[g + 2 * k]);
                    const __m512i l4 = _mm512_and_si512(
                        _mm512_srli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(qlk + 16 * g))), lshift), m4);
                    const __m512i h2 = _mm512_and_si512(
                        _mm512_srli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(qh + 16 * g))), hshift), m2);
                    const __m512i q = _mm512_sub_epi32(_mm512_or_si512(l4, _mm512_slli_epi32(h2, 4)), k32);
                    _mm512_storeu_ps(dst + 32 * k + 16 * g, _mm512_mul_ps(s, _mm512_cvtepi32_ps(q)));
                }
            }
        }
    }
}
CK_TARGET_AVX2 static void q6_k_avx2(const uint8_t *b, float *dst, int64_t n) {
    const __m256i m4 = _mm256_set1_epi32(0xF), m2 = _mm256_set1_epi32(3), k32 = _mm256_set1_epi32(32);
    for (int64_t i = 0; i < n / QK_K; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = rdhalf(b + 208);
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, dst += 128) {
            for (int k = 0; k < 4; k++) {
                const uint8_t *qlk = ql + (k & 1) * 32;
                const __m128i lshift = _mm_cvtsi32_si128((k >> 1) * 4), hshift = _mm_cvtsi32_si128(2 * k);
                for (int g = 0; g < 4; g++) {      /* 8 outputs at a time; scale index (8g / 16) + 2k */
                    const __m256 s = _mm256_set1_ps(d * (float)sc[g / 2 + 2 * k]);
                    const __m256i l4 = _mm256_and_si256(
                        _mm256_srl_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qlk + 8 * g))), lshift), m4);
                    const __m256i h2 = _mm256_and_si256(
                        _mm256_srl_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qh + 8 * g))), hshift), m2);
                    const __m256i q = _mm256_sub_epi32(_mm256_or_si256(l4, _mm256_slli_epi32(h2, 4)), k32);
                    _mm256_storeu_ps(dst + 32 * k + 8 * g, _mm256_mul_ps(s, _mm256_cvtepi32_ps(q)));
                }
            }
        }
    }
}

CK_TARGET_AVX2 static void bf16_avx2(const uint8_t *s, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + 2 * i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    ck_dequantize_row_bf16(s + 2 * i, dst + i, n - i);
}
CK_TARGET_AVX512 static void bf16_avx512(const uint8_t *s, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(s + 2 * i)));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
    ck_dequantize_row_bf16(s + 2 * i, dst + i, n - i);
}
#endif

/* ---------------------------------------------------------------------------------------------------------------- */
/* Dispatcher                                                                                                       */

void ck_dequantize_row(int t, const void *src, float *dst, int64_t n) {
    if (n <= 0) return;
    if (t == CK_GGML_F16 && ((uintptr_t)src & 1) == 0) { /* the f16 widening kernels (F16C when available) */
        ck_f16_to_f32(dst, src, (size_t)n);
        return;
    }
#if CK_X86
    const ck_isa isa = ck_isa_active();
    if (isa >= CK_ISA_AVX512) {
        switch (t) {
        case CK_GGML_Q8_0: q8_0_avx512(src, dst, n); return;
        case CK_GGML_Q4_K: q4_k_avx512(src, dst, n); return;
        case CK_GGML_Q6_K: q6_k_avx512(src, dst, n); return;
        case CK_GGML_BF16: bf16_avx512(src, dst, n); return;
        default: break;
        }
    } else if (isa >= CK_ISA_AVX2) {
        switch (t) {
        case CK_GGML_Q8_0: q8_0_avx2(src, dst, n); return;
        case CK_GGML_Q4_K: q4_k_avx2(src, dst, n); return;
        case CK_GGML_Q6_K: q6_k_avx2(src, dst, n); return;
        case CK_GGML_BF16: bf16_avx2(src, dst, n); return;
        default: break;
        }
    }
#endif
    switch (t) {
    case CK_GGML_F32: ck_dequantize_row_f32(src, dst, n); break;
    case CK_GGML_F16: ck_dequantize_row_f16(src, dst, n); break;
    case CK_GGML_BF16: ck_dequantize_row_bf16(src, dst, n); break;
    case CK_GGML_Q4_0: ck_dequantize_row_q4_0(src, dst, n); break;
    case CK_GGML_Q4_1: ck_dequantize_row_q4_1(src, dst, n); break;
    case CK_GGML_Q5_0: ck_dequantize_row_q5_0(src, dst, n); break;
    case CK_GGML_Q5_1: ck_dequantize_row_q5_1(src, dst, n); break;
    case CK_GGML_Q8_0: ck_dequantize_row_q8_0(src, dst, n); break;
    case CK_GGML_Q2_K: ck_dequantize_row_q2_k(src, dst, n); break;
    case CK_GGML_Q3_K: ck_dequantize_row_q3_k(src, dst, n); break;
    case CK_GGML_Q4_K: ck_dequantize_row_q4_k(src, dst, n); break;
    case CK_GGML_Q5_K: ck_dequantize_row_q5_k(src, dst, n); break;
    case CK_GGML_Q6_K: ck_dequantize_row_q6_k(src, dst, n); break;
    default: break;
    }
}
