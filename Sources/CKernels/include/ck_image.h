#ifndef DREAMSR_CK_IMAGE_H
#define DREAMSR_CK_IMAGE_H
/* Image kernels (blending, weight maps, colour conversion). */
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
