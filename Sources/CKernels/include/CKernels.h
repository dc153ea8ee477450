#ifndef DREAMSR_CKERNELS_H
#define DREAMSR_CKERNELS_H
/*
 * dreamsr hot kernels. Every public kernel has a scalar reference (`*_scalar`) and is dispatched at run time to the
 * best variant the CPU supports (AVX-512, AVX2+FMA, scalar). The ISA is chosen once (ck_isa_active), can be
 * overridden with ck_isa_force or the DREAMSR_KERNEL_ISA environment variable (avx512 | avx2 | scalar), and SIMD
 * variants are tested against the scalar reference.
 */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CK_ISA_SCALAR = 0,
    CK_ISA_AVX2 = 1,
    CK_ISA_AVX512 = 2,
} ck_isa;

/* The best ISA this CPU supports (ignores overrides). */
ck_isa ck_isa_detect(void);
/* The ISA the dispatched kernels use now. */
ck_isa ck_isa_active(void);
/* Force an ISA (clamped to what the CPU supports); returns the ISA now active. */
ck_isa ck_isa_force(ck_isa isa);
const char *ck_isa_name(ck_isa isa);

/* y[i] += x[i] */
void ck_add_inplace(float *y, const float *x, size_t n);
void ck_add_inplace_scalar(float *y, const float *x, size_t n);
/* y[i] = a*y[i] + b*x[i] */
void ck_axpby(float *y, const float *x, float a, float b, size_t n);
void ck_axpby_scalar(float *y, const float *x, float a, float b, size_t n);
/* x[i] *= a */
void ck_scale_inplace(float *x, float a, size_t n);
void ck_scale_inplace_scalar(float *x, float a, size_t n);
/* x[i] = x[i] >= 0 ? x[i] : slope*x[i] */
void ck_leaky_relu_inplace(float *x, float slope, size_t n);
void ck_leaky_relu_inplace_scalar(float *x, float slope, size_t n);
/* per-channel bias on planar data: x[c*plane + i] += bias[c] */
void ck_add_channel_bias(float *x, const float *bias, size_t channels, size_t plane);
void ck_add_channel_bias_scalar(float *x, const float *bias, size_t channels, size_t plane);

/* IEEE half and bfloat16 to float32 conversion. */
void ck_f16_to_f32(float *dst, const uint16_t *src, size_t n);
void ck_f16_to_f32_scalar(float *dst, const uint16_t *src, size_t n);
void ck_bf16_to_f32(float *dst, const uint16_t *src, size_t n);
void ck_bf16_to_f32_scalar(float *dst, const uint16_t *src, size_t n);

#ifdef __cplusplus
}
#endif

/* Kernel families, one header each. */
#include "ck_conv.h"
#include "ck_transformer.h"
#include "ck_lowprec.h"
#include "ck_image.h"
#include "ck_norm.h"
#include "ck_quants.h"
#include "ck_colorfix.h"
#include "ck_resize.h"
#include "ck_thread.h"
#include "ck_heap.h"
#endif
