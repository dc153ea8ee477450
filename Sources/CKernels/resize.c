/*
 * Lanczos3 resampling of planar float images (moved from CVipsShim: pure C, no libvips), so engine modules can
 * resize without the Imaging module. Compiled -O3 like the other kernels; no ISA variants.
 */
#include "CKernels.h"

#include <math.h>
#include <stdlib.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* MARK: Lanczos3 resize */

static inline double ck_sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return sin(x) / x;
}

static inline double ck_lanczos3(double x) {
    if (x <= -3.0 || x >= 3.0) return 0.0;
    return ck_sinc(x) * ck_sinc(x / 3.0);
}

/* Per output coordinate: first input index, tap count and normalised weights (stride = max taps). */
typedef struct {
    int *start;
    int *count;
    float *weights;
    int stride;
} ck_taps;

static int ck_taps_make(ck_taps *t, int in_size, int out_size) {
    const double scale = (double)in_size / out_size;
    const double filterscale = scale > 1.0 ? scale : 1.0;
    const double support = 3.0 * filterscale;
    t->stride = (int)ceil(support) * 2 + 1;
    t->start = malloc(sizeof(int) * out_size);
    t->count = malloc(sizeof(int) * out_size);
    t->weights = malloc(sizeof(float) * (size_t)out_size * t->stride);
    if (!t->start || !t->count || !t->weights) return -1;
    for (int o = 0; o < out_size; o++) {
        const double center = (o + 0.5) * scale;
        int lo = (int)floor(center - support + 0.5);
        int hi = (int)floor(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        int n = hi - lo;
        if (n > t->stride) n = t->stride;
        double sum = 0.0;
        double w[64 + 1];
        double *wp = n <= 64 ? w : malloc(sizeof(double) * n);
        if (!wp) return -1;
        for (int k = 0; k < n; k++) {
            wp[k] = ck_lanczos3((lo + k + 0.5 - center) / filterscale);
            sum += wp[k];
        }
        for (int k = 0; k < n; k++) t->weights[(size_t)o * t->stride + k] = (float)(sum != 0.0 ? wp[k] / sum : 0.0);
        if (wp != w) free(wp);
        t->start[o] = lo;
        t->count[o] = n;
    }
    return 0;
}

static void ck_taps_free(ck_taps *t) {
    free(t->start);
    free(t->count);
    free(t->weights);
}

int ck_resize_lanczos3(const float *src, int sw, int sh, int channels, float *dst, int dw, int dh) {
    if (sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0 || channels <= 0) return -1;
    ck_taps th = {0}, tv = {0};
    float *tmp = malloc(sizeof(float) * (size_t)sh * dw);
    int rc = -1;
    if (!tmp || ck_taps_make(&th, sw, dw) != 0 || ck_taps_make(&tv, sh, dh) != 0) goto done;
    for (int c = 0; c < channels; c++) {
        const float *in = src + (size_t)c * sw * sh;
        float *out = dst + (size_t)c * dw * dh;
        /* Horizontal pass: sh rows of dw. */
        for (int y = 0; y < sh; y++) {
            const float *row = in + (size_t)y * sw;
            float *trow = tmp + (size_t)y * dw;
            for (int x = 0; x < dw; x++) {
                const float *w = th.weights + (size_t)x * th.stride;
                const float *p = row + th.start[x];
                float acc = 0.0f;
                for (int k = 0; k < th.count[x]; k++) acc += w[k] * p[k];
                trow[x] = acc;
            }
        }
        /* Vertical pass: rows are combined whole, which vectorises across x. */
        for (int y = 0; y < dh; y++) {
            float *restrict orow = out + (size_t)y * dw;
            const float *w = tv.weights + (size_t)y * tv.stride;
            const int s0 = tv.start[y];
            for (int x = 0; x < dw; x++) orow[x] = 0.0f;
            for (int k = 0; k < tv.count[y]; k++) {
                const float *restrict trow = tmp + (size_t)(s0 + k) * dw;
                const float wk = w[k];
                for (int x = 0; x < dw; x++) orow[x] += wk * trow[x];
            }
        }
    }
    rc = 0;
done:
    free(tmp);
    ck_taps_free(&th);
    ck_taps_free(&tv);
    return rc;
}
