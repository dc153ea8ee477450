#ifndef DREAMSR_CK_RESIZE_H
#define DREAMSR_CK_RESIZE_H
#ifdef __cplusplus
extern "C" {
#endif

/* Lanczos3 resample of `channels` planes (src: channels*sh*sw, dst: channels*dh*dw). Pure C, exact output size,
 * antialiased when shrinking. Returns -1 for an empty size or when memory for the intermediate buffer cannot be
 * allocated. */
int ck_resize_lanczos3(const float *src, int sw, int sh, int channels, float *dst, int dw, int dh);

#ifdef __cplusplus
}
#endif
#endif
