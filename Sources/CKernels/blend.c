/* Tile blending kernels: separable-weight accumulation and normalisation. */
#include "internal.h"

void ck_blend_accumulate_scalar(float *canvas, size_t canvas_w, size_t canvas_h, const float *tile, size_t tile_w,
                                size_t tile_h, size_t channels, size_t x0, size_t y0, const float *wx,
                                const float *wy) {
    for (size_t c = 0; c < channels; c++) {
        for (size_t y = 0; y < tile_h; y++) {
            float *dst = canvas + (c * canvas_h + y0 + y) * canvas_w + x0;
            const float *src = tile + (c * tile_h + y) * tile_w;
            float a = wy[y];
            for (size_t x = 0; x < tile_w; x++) dst[x] += src[x] * (a * wx[x]);
        }
    }
}

void ck_blend_normalize_scalar(float *canvas, size_t w, size_t h, size_t channels, const float *sx, const float *sy) {
    for (size_t c = 0; c < channels; c++) {
        for (size_t y = 0; y < h; y++) {
            float *row = canvas + (c * h + y) * w;
            float inv_y = 1.0f / sy[y];
            for (size_t x = 0; x < w; x++) row[x] = row[x] * inv_y / sx[x];
        }
    }
}

#if CK_X86
CK_TARGET_AVX512 static void accumulate_avx512(float *canvas, size_t canvas_w, size_t canvas_h, const float *tile,
                                               size_t tile_w, size_t tile_h, size_t channels, size_t x0, size_t y0,
                                               const float *wx, const float *wy) {
    for (size_t c = 0; c < channels; c++) {
        for (size_t y = 0; y < tile_h; y++) {
            float *dst = canvas + (c * canvas_h + y0 + y) * canvas_w + x0;
            const float *src = tile + (c * tile_h + y) * tile_w;
            __m512 a = _mm512_set1_ps(wy[y]);
            size_t x = 0;
            for (; x + 16 <= tile_w; x += 16) {
                __m512 w = _mm512_mul_ps(a, _mm512_loadu_ps(wx + x));
                _mm512_storeu_ps(dst + x, _mm512_fmadd_ps(_mm512_loadu_ps(src + x), w, _mm512_loadu_ps(dst + x)));
            }
            for (; x < tile_w; x++) dst[x] += src[x] * (wy[y] * wx[x]);
        }
    }
}
CK_TARGET_AVX2 static void accumulate_avx2(float *canvas, size_t canvas_w, size_t canvas_h, const float *tile,
                                           size_t tile_w, size_t tile_h, size_t channels, size_t x0, size_t y0,
                                           const float *wx, const float *wy) {
    for (size_t c = 0; c < channels; c++) {
        for (size_t y = 0; y < tile_h; y++) {
            float *dst = canvas + (c * canvas_h + y0 + y) * canvas_w + x0;
            const float *src = tile + (c * tile_h + y) * tile_w;
            __m256 a = _mm256_set1_ps(wy[y]);
            size_t x = 0;
            for (; x + 8 <= tile_w; x += 8) {
                __m256 w = _mm256_mul_ps(a, _mm256_loadu_ps(wx + x));
                _mm256_storeu_ps(dst + x, _mm256_fmadd_ps(_mm256_loadu_ps(src + x), w, _mm256_loadu_ps(dst + x)));
            }
            for (; x < tile_w; x++) dst[x] += src[x] * (wy[y] * wx[x]);
        }
    }
}
#endif

void ck_blend_accumulate(float *canvas, size_t canvas_w, size_t canvas_h, const float *tile, size_t tile_w,
                         size_t tile_h, size_t channels, size_t x0, size_t y0, const float *wx, const float *wy) {
#if CK_X86
    switch (ck_isa_active()) {
    case CK_ISA_AVX512: accumulate_avx512(canvas, canvas_w, canvas_h, tile, tile_w, tile_h, channels, x0, y0, wx, wy); return;
    case CK_ISA_AVX2: accumulate_avx2(canvas, canvas_w, canvas_h, tile, tile_w, tile_h, channels, x0, y0, wx, wy); return;
    default: break;
    }
#endif
    ck_blend_accumulate_scalar(canvas, canvas_w, canvas_h, tile, tile_w, tile_h, channels, x0, y0, wx, wy);
}

void ck_blend_normalize(float *canvas, size_t w, size_t h, size_t channels, const float *sx, const float *sy) {
    /* Division-bound and memory-bound: the scalar loop auto-vectorises well at -O3. */
    ck_blend_normalize_scalar(canvas, w, h, channels, sx, sy);
}
