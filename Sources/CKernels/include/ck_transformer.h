#ifndef DREAMSR_CK_TRANSFORMER_H
#define DREAMSR_CK_TRANSFORMER_H
/* Transformer kernels (norms, activations, RoPE, softmax/attention) for FLUX, T5, CLIP. */
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
