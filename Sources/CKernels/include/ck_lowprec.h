#ifndef DREAMSR_CK_LOWPREC_H
#define DREAMSR_CK_LOWPREC_H
/* Linear-layer GEMM with low-precision weights read in place (e.g. from a memory-mapped file):
 *
 *     y[m, n] = sum_k x[m, k] * w[n, k]  (+ bias[n])     for output columns n in [n0, n1)
 *
 * x is float32 activations, prepared once per call into a low-precision copy (ck_lp_prepare_*); w is N rows of K
 * values, `w_row_bytes` apart, never copied to float32 as a whole. Callers split [0, N) across threads (each range
 * writes only its own columns of y); a range should be a multiple of 32 rows for speed, any range is correct.
 *
 * Every GEMM takes the ISA to run (`ck_isa_active()` in normal use; tests pass each one): CK_ISA_SCALAR is the
 * reference that defines the numerics, the SIMD variants match it up to float32 summation order.
 * CK_ISA_AVX512 uses AVX512_BF16 (`vdpbf16ps`) / AVX512_VNNI (`vpdpbusd`) where the CPU has them and falls back to
 * the AVX2 variant otherwise. */
#include <stddef.h>
#include <stdint.h>
#include "CKernels.h"
#ifdef __cplusplus
extern "C" {
#endif

/* CPU features beyond the ISA levels (1 when the CPU and OS support them, else 0). */
int ck_cpu_has_avx512_bf16(void);
int ck_cpu_has_avx512_vnni(void);
/* The variant `isa` resolves to for each weight format, for logs and benchmarks: "avx512-bf16", "avx2", "scalar",
 * "avx512-vnni". */
const char *ck_lp_bf16_variant(ck_isa isa);
const char *ck_lp_q8_0_variant(ck_isa isa);

/* ------------------------------------------------------------------------------------------------------------ */
/* bf16 weights: w[n, k] are bfloat16 (2 bytes, any 2-byte alignment). Activations are rounded to bf16
 * (round-to-nearest-even, NaN kept quiet), products are exact in float32, sums are float32.
 * Denormal bf16 inputs count as zero in the AVX512_BF16 variant (vdpbf16ps flushes them); the others keep them. */

/* Row length of the prepared activations: k rounded up to a multiple of 32 (the padding is zero). */
size_t ck_lp_bf16_ld(size_t k);
/* xb[r * ldxb + i] = bf16(x[r * ldx + i]) for i < k, 0 for k <= i < ldxb; rows [0, rows). */
void ck_lp_prepare_bf16(uint16_t *xb, size_t ldxb, const float *x, size_t ldx, size_t rows, size_t k);
void ck_lp_prepare_bf16_scalar(uint16_t *xb, size_t ldxb, const float *x, size_t ldx, size_t rows, size_t k);
/* Round one float to bf16 bits (the rounding the preparation uses). */
uint16_t ck_f32_to_bf16_rne(float v);

void ck_lp_gemm_bf16(const uint16_t *xb, size_t ldxb, size_t m, size_t k, const void *w, size_t w_row_bytes,
                     size_t n0, size_t n1, const float *bias, float *y, size_t ldy, ck_isa isa);

/* ------------------------------------------------------------------------------------------------------------ */
/* Q8_0 weights (ggml block_q8_0: IEEE half scale `d`, then 32 int8 `qs`; 34 bytes; value = d * qs[i]). k must be
 * a multiple of 32 and a row holds k/32 consecutive blocks.
 * Activations are quantized per block of 32 as ggml's quantize_row_q8_0 does (amax = max |x|, d = amax / 127,
 * q = roundf(x / d), q = 0 when d = 0), except that the block scale stays float32 (ggml rounds it to half).
 * Each output is sum over blocks b of (dx[m,b] * dw[n,b]) * (float)(sum_i q_x * q_w), the integer dot exact.
 * A block holding NaN or inf gets q = 0 and a non-finite scale, so its outputs are not finite (as in float32). */
#define CK_Q8_0_BLOCK 32
#define CK_Q8_0_BYTES 34

/* xq[r * k + i] = int8 quantized activations, xd[r * (k/32) + b] = their float scales; rows [0, rows).
 * The preparations are dispatched on ck_isa_active() and give the same bits as their scalar references. */
void ck_lp_prepare_q8_0(int8_t *xq, float *xd, const float *x, size_t ldx, size_t rows, size_t k);
void ck_lp_prepare_q8_0_scalar(int8_t *xq, float *xd, const float *x, size_t ldx, size_t rows, size_t k);

void ck_lp_gemm_q8_0(const int8_t *xq, const float *xd, size_t m, size_t k, const void *w, size_t w_row_bytes,
                     size_t n0, size_t n1, const float *bias, float *y, size_t ldy, ck_isa isa);

/* ------------------------------------------------------------------------------------------------------------ */
/* Any other weight type through a row dequantizer: `dequant_row(src, dst, n)` writes n float32 values of the row
 * that starts at `src`. Rows [n0, n1) are dequantized `panel_rows` at a time into a bf16 panel (rounded as the
 * activations are) and multiplied with the bf16 kernel, so memory stays at panel_rows * ldxb * 2 + k * 4 bytes.
 * Returns 0, or -1 when the scratch memory could not be allocated (y untouched). */
typedef void (*ck_dequant_row_fn)(const void *src, float *dst, int64_t n);

int ck_lp_gemm_dequant_bf16(const uint16_t *xb, size_t ldxb, size_t m, size_t k, const void *w,
                            size_t w_row_bytes, ck_dequant_row_fn dequant_row, size_t panel_rows, size_t n0,
                            size_t n1, const float *bias, float *y, size_t ldy, ck_isa isa);

/* The row dequantizer of a ggml type for the generic path: ck_dequantize_row(ggml_type, ...) (dispatched on the
 * active ISA); NULL for a type dreamsr does not read. */
ck_dequant_row_fn ck_lp_row_dequantizer(int ggml_type);
/* FP8 rows with scale 1 (ck_dequantize_row_fp8_*): the generic path's dequantizers for FP8 weights; a per-tensor
 * scale (ComfyUI `scale_weight`) is applied by the caller (it multiplies the activations). */
void ck_lp_dequant_row_fp8_e4m3(const void *src, float *dst, int64_t n);
void ck_lp_dequant_row_fp8_e5m2(const void *src, float *dst, int64_t n);

/* The float32 form of the generic path: rows [r0, r0+rows) dequantized into panel[r * k + i] (a caller buffer of
 * rows * k floats), for a float32 GEMM by the caller (e.g. BLAS sgemm on the panel). */
void ck_lp_dequant_panel_f32(float *panel, const void *w, size_t w_row_bytes, size_t k,
                             ck_dequant_row_fn dequant_row, size_t r0, size_t rows);

/* ------------------------------------------------------------------------------------------------------------ */
/* Attention in bf16 (one head, one block of queries): out[i, 0..d) = softmax(scale * q_i . K^T) . V with the two
 * products in the bf16 kernel (float32 accumulation) and the softmax in float32 (ck_softmax_rows); the
 * probabilities are rounded to bf16 for the second product.
 *   qb: [nq, ldqb] bf16 queries, kb: [keys, ldkb] bf16 keys (ldqb = ldkb = ck_lp_bf16_ld(d), zero padded),
 *   vt: [d, ldvt] bf16 values transposed (ldvt = ck_lp_bf16_ld(keys), zero padded),
 *   scores: nq * keys floats and pb: nq * ldvt bf16 of scratch; out rows ldo floats apart. */
void ck_lp_attention_bf16(const uint16_t *qb, size_t ldqb, size_t nq, const uint16_t *kb, size_t ldkb, size_t keys,
                          const uint16_t *vt, size_t ldvt, size_t d, float scale, float *scores, uint16_t *pb,
                          float *out, size_t ldo, ck_isa isa);
/* vt[c * ldvt + r] = bf16(v[r * ldv + c]) for r < rows, c < cols; 0 for rows <= r < ldvt. */
void ck_lp_prepare_bf16_transposed(uint16_t *vt, size_t ldvt, const float *v, size_t ldv, size_t rows, size_t cols);

#ifdef __cplusplus
}
#endif
#endif
