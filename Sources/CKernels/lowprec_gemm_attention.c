/* Attention with bf16 products (see ck_lowprec.h): the bf16 GEMM twice around the float32 softmax. The ISA picks
 * the GEMM variant (scalar reference, AVX2, AVX512_BF16); the softmax and scaling are the dispatched float32
 * kernels. */
#include "internal.h"
#include "ck_lowprec.h"

void ck_lp_prepare_bf16_transposed(uint16_t *vt, size_t ldvt, const float *v, size_t ldv, size_t rows, size_t cols) {
    for (size_t c = 0; c < cols; c++) {
        uint16_t *d = vt + c * ldvt;
        for (size_t r = 0; r < rows; r++) d[r] = ck_f32_to_bf16_rne(v[r * ldv + c]);
        for (size_t r = rows; r < ldvt; r++) d[r] = 0;
    }
}

void ck_lp_attention_bf16(const uint16_t *qb, size_t ldqb, size_t nq, const uint16_t *kb, size_t ldkb, size_t keys,
                          const uint16_t *vt, size_t ldvt, size_t d, float scale, float *scores, uint16_t *pb,
                          float *out, size_t ldo, ck_isa isa) {
    if (nq == 0 || keys == 0) return;
    ck_lp_gemm_bf16(qb, ldqb, nq, d, kb, ldkb * sizeof(uint16_t), 0, keys, NULL, scores, keys, isa);
    ck_scale_inplace(scores, scale, nq * keys);
    ck_softmax_rows(scores, keys, nq, keys);
    ck_lp_prepare_bf16(pb, ldvt, scores, keys, nq, keys);
    ck_lp_gemm_bf16(pb, ldvt, nq, keys, vt, ldvt * sizeof(uint16_t), 0, d, NULL, out, ldo, isa);
}
