#include "CKernels.h"

static inline size_t clampi(ptrdiff_t v, size_t n) { return v < 0 ? 0 : ((size_t)v >= n ? n - 1 : (size_t)v); }

void ck_blur121_dilated(float *dst, const float *src, float *tmp, size_t channels, size_t h, size_t w, size_t d) {
    for (size_t c = 0; c < channels; c++) {
        const float *s = src + c * h * w;
        float *o = dst + c * h * w;
        /* Horizontal pass into tmp: borders with clamping, the interior without. */
        for (size_t y = 0; y < h; y++) {
            const float *row = s + y * w;
            float *t = tmp + y * w;
            for (size_t x = 0; x < w; x++) {
                if (x >= d && x + d < w) break;
                t[x] = 0.25f * row[clampi((ptrdiff_t)x - (ptrdiff_t)d, w)] + 0.5f * row[x] + 0.25f * row[clampi((ptrdiff_t)(x + d), w)];
            }
            for (size_t x = d; x + d < w; x++) t[x] = 0.25f * row[x - d] + 0.5f * row[x] + 0.25f * row[x + d];
            for (size_t x = (w > d ? w - d : 0); x < w; x++) {
                t[x] = 0.25f * row[clampi((ptrdiff_t)x - (ptrdiff_t)d, w)] + 0.5f * row[x] + 0.25f * row[clampi((ptrdiff_t)(x + d), w)];
            }
        }
        /* Vertical pass into dst. */
        for (size_t y = 0; y < h; y++) {
            const float *u = tmp + clampi((ptrdiff_t)y - (ptrdiff_t)d, h) * w;
            const float *m = tmp + y * w;
            const float *dn = tmp + clampi((ptrdiff_t)(y + d), h) * w;
            float *r = o + y * w;
            for (size_t x = 0; x < w; x++) r[x] = 0.25f * u[x] + 0.5f * m[x] + 0.25f * dn[x];
        }
    }
}
