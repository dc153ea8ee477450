#ifndef DREAMSR_CK_QUANTS_H
#define DREAMSR_CK_QUANTS_H
/* Row dequantizers for GGUF (ggml) block types and FP8, used in place on memory-mapped weights.
 *
 * Types are ggml's type ids (ggml.h `enum ggml_type`) and each block has exactly ggml's layout (ggml-common.h).
 * The results equal the `gguf` Python package's `gguf.quants.dequantize` bit for bit: every product and difference
 * is one float32 operation, in numpy's order, never contracted to an FMA (quants.c turns contraction off).
 *
 * Each type has a scalar reference `ck_dequantize_row_<type>`; `ck_dequantize_row` dispatches on the type id and on
 * the active ISA (AVX-512 / AVX2 variants for Q8_0, Q4_K, Q6_K and BF16, tested equal to the scalar ones; F16 rows
 * use the F16C widening kernel `ck_f16_to_f32` when 2-byte aligned).
 * `n` is the number of values to write and must be a multiple of the type's block size; `src` needs no alignment. */
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* ggml type ids (the subset dreamsr reads). */
enum {
    CK_GGML_F32 = 0,
    CK_GGML_F16 = 1,
    CK_GGML_Q4_0 = 2,
    CK_GGML_Q4_1 = 3,
    CK_GGML_Q5_0 = 6,
    CK_GGML_Q5_1 = 7,
    CK_GGML_Q8_0 = 8,
    CK_GGML_Q2_K = 10,
    CK_GGML_Q3_K = 11,
    CK_GGML_Q4_K = 12,
    CK_GGML_Q5_K = 13,
    CK_GGML_Q6_K = 14,
    CK_GGML_BF16 = 30,
};

/* Values per block (1 for F32/F16/BF16, 32 for Q4_0..Q8_0, 256 for the K-quants); 0 for unsupported types. */
int64_t ck_qtype_block_size(int ggml_type);
/* Bytes per block; 0 for unsupported types. */
int64_t ck_qtype_block_bytes(int ggml_type);

/* Dequantizes n values (whole blocks) of type ggml_type from src into dst. Unsupported types write nothing. */
void ck_dequantize_row(int ggml_type, const void *src, float *dst, int64_t n);

/* Scalar references, one per type. */
void ck_dequantize_row_f32(const void *src, float *dst, int64_t n);
void ck_dequantize_row_f16(const void *src, float *dst, int64_t n);
void ck_dequantize_row_bf16(const void *src, float *dst, int64_t n);
void ck_dequantize_row_q4_0(const void *src, float *dst, int64_t n);
void ck_dequantize_row_q4_1(const void *src, float *dst, int64_t n);
void ck_dequantize_row_q5_0(const void *src, float *dst, int64_t n);
void ck_dequantize_row_q5_1(const void *src, float *dst, int64_t n);
void ck_dequantize_row_q8_0(const void *src, float *dst, int64_t n);
void ck_dequantize_row_q2_k(const void *src, float *dst, int64_t n);
void ck_dequantize_row_q3_k(const void *src, float *dst, int64_t n);
void ck_dequantize_row_q4_k(const void *src, float *dst, int64_t n);
void ck_dequantize_row_q5_k(const void *src, float *dst, int64_t n);
void ck_dequantize_row_q6_k(const void *src, float *dst, int64_t n);

/* FP8 (safetensors F8_E4M3 = float8_e4m3fn, F8_E5M2): dst[i] = decode(src[i]) * scale, one float32 multiply
 * (pass scale = 1 for plain checkpoints; ComfyUI "scaled" ones store a per-tensor `scale_weight`). Exact decoding
 * through a 256-entry table: e4m3fn has no infinities (0x7f / 0xff are NaN, max 448); e5m2 is IEEE-like. */
void ck_dequantize_row_fp8_e4m3(const uint8_t *src, float *dst, int64_t n, float scale);
void ck_dequantize_row_fp8_e5m2(const uint8_t *src, float *dst, int64_t n, float scale);

#ifdef __cplusplus
}
#endif
#endif
