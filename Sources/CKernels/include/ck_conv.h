#ifndef DREAMSR_CK_CONV_H
#define DREAMSR_CK_CONV_H
/* Convolution helpers (im2col, padding, upsampling) for CNNs (RRDBNet, VAE). */
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
