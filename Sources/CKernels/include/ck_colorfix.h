#ifndef DREAMSR_CK_COLORFIX_H
#define DREAMSR_CK_COLORFIX_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * One level of the a-trous wavelet blur of the colour fix: the separable 3x3 binomial kernel [1 2 1]/4 x [1 2 1]/4
 * with dilation `d`, replicate borders, on `channels` planes of h x w (planar, row-major). `tmp` holds h*w floats.
 * src and dst must not overlap. Plain C compiled -O3 (the compiler vectorises the inner loops); no ISA variants.
 */
void ck_blur121_dilated(float *dst, const float *src, float *tmp, size_t channels, size_t h, size_t w, size_t d);

#ifdef __cplusplus
}
#endif
#endif
