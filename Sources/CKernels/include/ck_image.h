#ifndef DREAMSR_CK_IMAGE_H
#define DREAMSR_CK_IMAGE_H
/* Image kernels (tile blending). */
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Weighted accumulation of one planar tile into a planar canvas:
 *   canvas[c][y0+y][x0+x] += tile[c][y][x] * wy[y] * wx[x]
 * for c < channels, y < tile_h, x < tile_w. canvas is channels x canvas_h x canvas_w.
 */
void ck_blend_accumulate(float *canvas, size_t canvas_w, size_t canvas_h, const float *tile, size_t tile_w,
                         size_t tile_h, size_t channels, size_t x0, size_t y0, const float *wx, const float *wy);
void ck_blend_accumulate_scalar(float *canvas, size_t canvas_w, size_t canvas_h, const float *tile, size_t tile_w,
                                size_t tile_h, size_t channels, size_t x0, size_t y0, const float *wx,
                                const float *wy);

/* canvas[c][y][x] /= (sy[y] * sx[x]) for a canvas of channels x h x w. */
void ck_blend_normalize(float *canvas, size_t w, size_t h, size_t channels, const float *sx, const float *sy);
void ck_blend_normalize_scalar(float *canvas, size_t w, size_t h, size_t channels, const float *sx, const float *sy);

#ifdef __cplusplus
}
#endif
#endif
