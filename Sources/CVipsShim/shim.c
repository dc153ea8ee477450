/*
 * Non-variadic libvips wrappers and pixel conversion loops for the Imaging module (see include/CVipsShim.h).
 * Compiled with -O3 even in debug builds (Package.swift), so the per-pixel loops here stay fast in tests.
 */
#include "CVipsShim.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* MARK: errors */

static void dsr_set_error(char *err, size_t errlen, const char *fallback) {
    if (!err || errlen == 0) {
        vips_error_clear();
        return;
    }
    char *msg = vips_error_buffer_copy(); /* copies and clears the (global) vips error buffer */
    const char *use = (msg && msg[0]) ? msg : fallback;
    snprintf(err, errlen, "%s", use ? use : "libvips error");
    if (msg) g_free(msg);
    /* Trim trailing newlines and join lines with "; ". */
    size_t n = strlen(err);
    while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' ')) err[--n] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (err[i] == '\n') err[i] = ';';
    }
}

/* MARK: warnings */

static _Atomic(dsr_warning_fn) dsr_warning_handler = NULL;

static void dsr_glog(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data) {
    dsr_warning_fn fn = atomic_load(&dsr_warning_handler);
    if (fn) fn(domain ? domain : "", message ? message : "");
    else g_log_default_handler(domain, level, message, data);
}

void dsr_set_warning_handler(dsr_warning_fn fn) { atomic_store(&dsr_warning_handler, fn); }

/* MARK: init */

static pthread_once_t dsr_once = PTHREAD_ONCE_INIT;
static int dsr_init_rc = 0;
static char dsr_init_err[512];

static void dsr_do_init(void) {
    if (vips_init("dreamsr") != 0) {
        dsr_init_rc = -1;
        dsr_set_error(dsr_init_err, sizeof dsr_init_err, "vips_init failed");
        return;
    }
    /* No operation cache: every image is processed once, and a cache only holds memory and file handles. */
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    /* Refuse loaders libvips marks as unsafe for untrusted input (pdf, svg, fits, matlab, ...). */
    vips_block_untrusted_set(TRUE);
    /* libvips and the GLib/GObject layers under it log through these domains; none of it may reach stderr when
     * the app routes warnings (the CLI's error lines, the daemon's log). */
    const GLogLevelFlags levels = G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO;
    const char *domains[] = {"VIPS", "GLib", "GLib-GObject", "GModule", "GLib-GIO"};
    for (size_t i = 0; i < sizeof domains / sizeof domains[0]; i++) g_log_set_handler(domains[i], levels, dsr_glog, NULL);
}

int dsr_vips_init(const char *argv0, char *err, size_t errlen) {
    (void)argv0;
    pthread_once(&dsr_once, dsr_do_init);
    if (dsr_init_rc != 0 && err && errlen) snprintf(err, errlen, "%s", dsr_init_err);
    return dsr_init_rc;
}

const char *dsr_vips_version_string(void) { return vips_version_string(); }
size_t dsr_vips_tracked_mem(void) { return vips_tracked_get_mem(); }
size_t dsr_vips_tracked_mem_highwater(void) { return vips_tracked_get_mem_highwater(); }
int dsr_vips_tracked_files(void) { return vips_tracked_get_files(); }

/* MARK: open and header */

/* vips_foreign_find_load_source returns a type name ("VipsForeignLoadPngSource"): map it to the nickname
 * ("pngload_source"). */
static const char *dsr_loader_nickname(const char *type_name) {
    if (!type_name) return NULL;
    GType type = g_type_from_name(type_name);
    const char *nick = type ? vips_nickname_find(type) : NULL;
    return nick ? nick : type_name;
}

const char *dsr_find_loader_file(const char *path) {
    VipsSource *source = vips_source_new_from_file(path);
    if (!source) {
        vips_error_clear();
        return NULL;
    }
    const char *name = vips_foreign_find_load_source(source);
    g_object_unref(source);
    vips_error_clear();
    return dsr_loader_nickname(name);
}

const char *dsr_find_loader_buffer(const void *data, size_t len) {
    VipsSource *source = vips_source_new_from_memory(data, len);
    if (!source) {
        vips_error_clear();
        return NULL;
    }
    const char *name = vips_foreign_find_load_source(source);
    g_object_unref(source);
    vips_error_clear();
    return dsr_loader_nickname(name);
}

static VipsImage *dsr_open_source(VipsSource *source, char *err, size_t errlen) {
    /* Header only: libvips decodes pixels when they are requested. Sequential access lets loaders stream;
     * fail_on=truncated turns a truncated file into an error instead of a grey-filled image. */
    VipsImage *image = vips_image_new_from_source(source, "", "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                                  VIPS_FAIL_ON_TRUNCATED, NULL);
    g_object_unref(source); /* the image keeps its own reference */
    if (!image) dsr_set_error(err, errlen, "the loader gave no details (damaged or truncated header?)");
    return image;
}

/* Paths go through a VipsSource so that libvips does not parse "[options]" out of file names. */
VipsImage *dsr_open_file(const char *path, char *err, size_t errlen) {
    VipsSource *source = vips_source_new_from_file(path);
    if (!source) {
        dsr_set_error(err, errlen, "cannot open file");
        return NULL;
    }
    return dsr_open_source(source, err, errlen);
}

VipsImage *dsr_open_buffer(const void *data, size_t len, char *err, size_t errlen) {
    VipsSource *source = vips_source_new_from_memory(data, len);
    if (!source) {
        dsr_set_error(err, errlen, "cannot wrap the buffer");
        return NULL;
    }
    return dsr_open_source(source, err, errlen);
}

void dsr_image_release(VipsImage *image) {
    if (image) g_object_unref(image);
}

void dsr_header_read(VipsImage *image, dsr_header *h) {
    memset(h, 0, sizeof *h);
    h->width = vips_image_get_width(image);
    h->height = vips_image_get_height(image);
    h->pages = vips_image_get_n_pages(image);
    if (h->pages < 1) h->pages = 1;
    h->bands = vips_image_get_bands(image);
    h->band_format = (int)vips_image_get_format(image);
    h->interpretation = (int)vips_image_get_interpretation(image);
    h->has_alpha = vips_image_hasalpha(image) ? 1 : 0;
    h->is_cmyk = (h->interpretation == VIPS_INTERPRETATION_CMYK && h->bands >= 4) ? 1 : 0;
    h->is_grey = (!h->is_cmyk && h->bands <= 2) ? 1 : 0;
    if (h->bands == 2 && !h->has_alpha) h->has_alpha = 1; /* grey + extra band: treat the extra band as alpha */
    switch (vips_image_get_format(image)) {
    case VIPS_FORMAT_UCHAR:
    case VIPS_FORMAT_CHAR:
        h->bit_depth = 8;
        break;
    default:
        h->bit_depth = 16;
        break;
    }
    h->has_icc = vips_image_get_typeof(image, VIPS_META_ICC_NAME) != 0 ? 1 : 0;
    int o = vips_image_get_orientation(image);
    h->orientation = (o >= 1 && o <= 8) ? o : 1;
    const char *s = NULL;
    if (vips_image_get_typeof(image, VIPS_META_LOADER) && vips_image_get_string(image, VIPS_META_LOADER, &s) == 0 && s)
        snprintf(h->loader, sizeof h->loader, "%s", s);
    s = NULL;
    if (vips_image_get_typeof(image, "heif-compression") &&
        vips_image_get_string(image, "heif-compression", &s) == 0 && s)
        snprintf(h->heif_compression, sizeof h->heif_compression, "%s", s);
    vips_error_clear();
}

/* MARK: decode */

typedef struct {
    float *planes[3];
    float *alpha;
    int colour_bands; /* 1 (grey, replicated) or 3 */
    int alpha_band;   /* index of the alpha band, or -1 */
    int bands;
    float scale;      /* 1/255 or 1/65535 */
    /* destination index = i0 + sx * ax + sy * ay (EXIF orientation folded in) */
    ptrdiff_t i0, ax, ay;
} dsr_decode_ctx;

#define DSR_DECODE_LOOP(T)                                                                                             \
    for (int y = area->top; y < area->top + area->height; y++) {                                                       \
        const T *p = (const T *)VIPS_REGION_ADDR(region, area->left, y);                                               \
        ptrdiff_t idx = c->i0 + (ptrdiff_t)area->left * c->ax + (ptrdiff_t)y * c->ay;                                  \
        const int n = area->width, nb = c->bands;                                                                      \
        const float s = c->scale;                                                                                      \
        if (c->colour_bands == 3) {                                                                                    \
            for (int x = 0; x < n; x++, p += nb, idx += c->ax) {                                                       \
                r[idx] = (float)p[0] * s;                                                                              \
                g[idx] = (float)p[1] * s;                                                                              \
                b[idx] = (float)p[2] * s;                                                                              \
            }                                                                                                          \
        } else {                                                                                                       \
            for (int x = 0; x < n; x++, p += nb, idx += c->ax) {                                                       \
                const float v = (float)p[0] * s;                                                                       \
                r[idx] = v;                                                                                            \
                g[idx] = v;                                                                                            \
                b[idx] = v;                                                                                            \
            }                                                                                                          \
        }                                                                                                              \
        if (a) {                                                                                                       \
            p = (const T *)VIPS_REGION_ADDR(region, area->left, y) + c->alpha_band;                                    \
            idx = c->i0 + (ptrdiff_t)area->left * c->ax + (ptrdiff_t)y * c->ay;                                        \
            for (int x = 0; x < n; x++, p += nb, idx += c->ax) a[idx] = (float)p[0] * s;                               \
        }                                                                                                              \
    }

/* Called by vips_sink from its worker threads, each with a region already computed for a different area: the
 * conversion (and the first touch of the output pages) runs in parallel. Areas are disjoint, so are the writes. */
static int dsr_decode_write(VipsRegion *region, void *seq, void *arg, void *unused, gboolean *stop) {
    (void)seq;
    (void)unused;
    (void)stop;
    const VipsRect *area = &region->valid;
    dsr_decode_ctx *c = (dsr_decode_ctx *)arg;
    float *restrict r = c->planes[0], *restrict g = c->planes[1], *restrict b = c->planes[2];
    float *restrict a = c->alpha;
    if (vips_image_get_format(region->im) == VIPS_FORMAT_USHORT) {
        DSR_DECODE_LOOP(unsigned short)
    } else {
        DSR_DECODE_LOOP(unsigned char)
    }
    return 0;
}

/* Replace *x by the result of an operation; returns -1 (and leaves *x) on failure. */
#define DSR_STEP(x, t, call)                                                                                           \
    do {                                                                                                               \
        VipsImage *t = NULL;                                                                                           \
        if ((call) != 0) goto fail;                                                                                    \
        g_object_unref(x);                                                                                             \
        x = t;                                                                                                         \
    } while (0)

int dsr_decode(VipsImage *image, const dsr_header *h, float *color, float *alpha, int out_w, int out_h, char *err,
               size_t errlen) {
    return dsr_decode_keeping_profile(image, h, color, alpha, out_w, out_h, 0, err, errlen);
}

int dsr_get_blob(VipsImage *image, const char *name, const void **data, size_t *len) {
    *data = NULL;
    *len = 0;
    if (vips_image_get_typeof(image, name) == 0) return -1;
    if (vips_image_get_blob(image, name, data, len) != 0) {
        vips_error_clear();
        return -1;
    }
    return *len > 0 ? 0 : -1;
}

int dsr_get_string_field(VipsImage *image, const char *name, char *buf, size_t buflen) {
    if (buflen == 0) return -1;
    buf[0] = 0;
    if (vips_image_get_typeof(image, name) == 0) return -1;
    char *text = NULL;
    if (vips_image_get_as_string(image, name, &text) != 0) {
        vips_error_clear();
        return -1;
    }
    snprintf(buf, buflen, "%s", text);
    g_free(text);
    return 0;
}

int dsr_decode_keeping_profile(VipsImage *image, const dsr_header *h, float *color, float *alpha, int out_w,
                               int out_h, int keep_profile, char *err, size_t errlen) {
    const int depth16 = h->bit_depth == 16;
    const VipsBandFormat target_format = depth16 ? VIPS_FORMAT_USHORT : VIPS_FORMAT_UCHAR;
    VipsImage *x = image;
    g_object_ref(x);

    if (h->is_grey) {
        const VipsInterpretation target = depth16 ? VIPS_INTERPRETATION_GREY16 : VIPS_INTERPRETATION_B_W;
        if (vips_image_get_interpretation(x) != target) {
            VipsImage *t = NULL;
            if (vips_colourspace(x, &t, target, NULL) == 0) {
                g_object_unref(x);
                x = t;
            } else {
                vips_error_clear(); /* unusual grey variant: cast below */
            }
        }
    } else {
        const VipsInterpretation target = depth16 ? VIPS_INTERPRETATION_RGB16 : VIPS_INTERPRETATION_sRGB;
        int converted = 0;
        if ((h->has_icc && !keep_profile) || h->is_cmyk) {
            /* Embedded profile -> sRGB; a CMYK image without a profile uses libvips's built-in CMYK profile. */
            VipsImage *t = NULL;
            if (vips_icc_transform(x, &t, "srgb", "embedded", TRUE, "depth", depth16 ? 16 : 8, "intent",
                                   VIPS_INTENT_RELATIVE, NULL) == 0) {
                g_object_unref(x);
                x = t;
                converted = 1;
            } else {
                vips_error_clear(); /* broken profile: fall back to a plain colourspace conversion */
            }
        }
        if (!converted && vips_image_get_interpretation(x) != target) {
            VipsImage *t = NULL;
            if (vips_colourspace(x, &t, target, NULL) == 0) {
                g_object_unref(x);
                x = t;
            } else {
                vips_error_clear(); /* e.g. a 3-band MULTIBAND TIFF: take the bands as RGB */
            }
        }
    }
    if (vips_image_get_format(x) != target_format) DSR_STEP(x, t, vips_cast(x, &t, target_format, NULL));

    const int colour_bands = h->is_grey ? 1 : 3;
    if (vips_image_get_bands(x) < colour_bands) {
        snprintf(err, errlen, "unexpected band count %d after colour conversion", vips_image_get_bands(x));
        g_object_unref(x);
        return -1;
    }
    if (vips_image_get_width(x) != h->width || vips_image_get_height(x) != h->height) {
        snprintf(err, errlen, "unexpected size %dx%d after colour conversion", vips_image_get_width(x),
                 vips_image_get_height(x));
        g_object_unref(x);
        return -1;
    }

    dsr_decode_ctx c;
    memset(&c, 0, sizeof c);
    const ptrdiff_t sw = h->width, sh = h->height, ow = out_w;
    (void)out_h;
    c.planes[0] = color;
    c.planes[1] = color + (size_t)out_w * out_h;
    c.planes[2] = color + 2 * (size_t)out_w * out_h;
    c.colour_bands = colour_bands;
    c.bands = vips_image_get_bands(x);
    c.alpha_band = (h->has_alpha && alpha && c.bands > colour_bands) ? colour_bands : -1;
    c.alpha = c.alpha_band >= 0 ? alpha : NULL;
    c.scale = depth16 ? 1.0f / 65535.0f : 1.0f / 255.0f;
    switch (h->orientation) {
    case 2: c.i0 = sw - 1; c.ax = -1; c.ay = ow; break;
    case 3: c.i0 = (sh - 1) * ow + sw - 1; c.ax = -1; c.ay = -ow; break;
    case 4: c.i0 = (sh - 1) * ow; c.ax = 1; c.ay = -ow; break;
    case 5: c.i0 = 0; c.ax = ow; c.ay = 1; break;
    case 6: c.i0 = sh - 1; c.ax = ow; c.ay = -1; break;
    case 7: c.i0 = (sw - 1) * ow + sh - 1; c.ax = -ow; c.ay = -1; break;
    case 8: c.i0 = (sw - 1) * ow; c.ax = -ow; c.ay = 1; break;
    default: c.i0 = 0; c.ax = 1; c.ay = ow; break;
    }
    if (vips_sink(x, NULL, dsr_decode_write, NULL, &c, NULL) != 0) goto fail;
    g_object_unref(x);
    if (alpha && c.alpha_band < 0) {
        for (size_t i = 0, n = (size_t)out_w * out_h; i < n; i++) alpha[i] = 1.0f;
    }
    return 0;

fail:
    dsr_set_error(err, errlen, "decode failed");
    g_object_unref(x);
    return -1;
}

/* MARK: encode */

typedef struct {
    const float *r, *g, *b, *alpha;
    int width;
    int grey;
    int with_alpha;  /* write an alpha band */
    int flatten;     /* composite onto white (JPEG with alpha) */
    int depth16;
} dsr_encode_ctx;

static inline float dsr_clamp01(float v) { return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; /* NaN -> 0 */ }

#define DSR_ENCODE_LOOP(T, MAXV)                                                                                       \
    for (int y = rect->top; y < rect->top + rect->height; y++) {                                                       \
        T *q = (T *)VIPS_REGION_ADDR(out, rect->left, y);                                                              \
        const size_t base = (size_t)y * e->width + rect->left;                                                         \
        for (int x = 0; x < rect->width; x++) {                                                                        \
            const size_t i = base + x;                                                                                 \
            float rv = dsr_clamp01(e->r[i]), gv = dsr_clamp01(e->g[i]), bv = dsr_clamp01(e->b[i]);                    \
            float av = e->alpha ? dsr_clamp01(e->alpha[i]) : 1.0f;                                                     \
            if (e->flatten) {                                                                                          \
                rv = rv * av + (1.0f - av);                                                                            \
                gv = gv * av + (1.0f - av);                                                                            \
                bv = bv * av + (1.0f - av);                                                                            \
            }                                                                                                          \
            if (e->grey) {                                                                                             \
                *q++ = (T)(dsr_clamp01(0.2126f * rv + 0.7152f * gv + 0.0722f * bv) * MAXV + 0.5f);                   \
            } else {                                                                                                   \
                *q++ = (T)(rv * MAXV + 0.5f);                                                                          \
                *q++ = (T)(gv * MAXV + 0.5f);                                                                          \
                *q++ = (T)(bv * MAXV + 0.5f);                                                                          \
            }                                                                                                          \
            if (e->with_alpha) *q++ = (T)(av * MAXV + 0.5f);                                                           \
        }                                                                                                              \
    }

static int dsr_encode_gen(VipsRegion *out, void *seq, void *a, void *b, gboolean *stop) {
    (void)seq;
    (void)b;
    (void)stop;
    const dsr_encode_ctx *e = (const dsr_encode_ctx *)a;
    const VipsRect *rect = &out->valid;
    if (e->depth16) {
        DSR_ENCODE_LOOP(unsigned short, 65535.0f)
    } else {
        DSR_ENCODE_LOOP(unsigned char, 255.0f)
    }
    return 0;
}

/* A lazy vips image whose pixels are computed from the planes on demand (no full-size interleaved copy). */
static VipsImage *dsr_planar_source(dsr_encode_ctx *e, int width, int height) {
    const int bands = (e->grey ? 1 : 3) + (e->with_alpha ? 1 : 0);
    VipsInterpretation interp;
    if (e->grey) interp = e->depth16 ? VIPS_INTERPRETATION_GREY16 : VIPS_INTERPRETATION_B_W;
    else interp = e->depth16 ? VIPS_INTERPRETATION_RGB16 : VIPS_INTERPRETATION_sRGB;
    VipsImage *image = vips_image_new();
    vips_image_init_fields(image, width, height, bands, e->depth16 ? VIPS_FORMAT_USHORT : VIPS_FORMAT_UCHAR,
                           VIPS_CODING_NONE, interp, 1.0, 1.0);
    if (vips_image_pipelinev(image, VIPS_DEMAND_STYLE_THINSTRIP, NULL) != 0 ||
        vips_image_generate(image, NULL, dsr_encode_gen, NULL, e, NULL) != 0) {
        g_object_unref(image);
        return NULL;
    }
    return image;
}

/* Encode to `path`, or to a g_malloc'd buffer (*out_buf, *out_len) when path is NULL. */
/* Sets the EXIF Orientation tag (0x0112, IFD0) of an "Exif\0\0"+TIFF blob to 1, in place. */
static void dsr_exif_set_upright(unsigned char *b, size_t len) {
    size_t base = (len >= 6 && memcmp(b, "Exif\0\0", 6) == 0) ? 6 : 0;
    if (len < base + 8) return;
    const unsigned char *t = b + base;
    const int le = t[0] == 'I' && t[1] == 'I';
    if (!le && !(t[0] == 'M' && t[1] == 'M')) return;
#define DSR_U16(p) (le ? (unsigned)((p)[0] | (p)[1] << 8) : (unsigned)((p)[0] << 8 | (p)[1]))
#define DSR_U32(p) (le ? ((size_t)(p)[0] | (size_t)(p)[1] << 8 | (size_t)(p)[2] << 16 | (size_t)(p)[3] << 24) \
                       : ((size_t)(p)[0] << 24 | (size_t)(p)[1] << 16 | (size_t)(p)[2] << 8 | (size_t)(p)[3]))
    const size_t tlen = len - base;
    const size_t ifd = DSR_U32(t + 4);
    if (ifd + 2 > tlen) return;
    const unsigned n = DSR_U16(t + ifd);
    for (unsigned i = 0; i < n; i++) {
        const size_t e = ifd + 2 + (size_t)i * 12;
        if (e + 12 > tlen) return;
        if (DSR_U16(t + e) == 0x0112 && DSR_U16(t + e + 2) == 3 /* SHORT */) {
            unsigned char *v = b + base + e + 8;
            if (le) { v[0] = 1; v[1] = 0; } else { v[0] = 0; v[1] = 1; }
        }
    }
#undef DSR_U16
#undef DSR_U32
}

static void dsr_attach_metadata(VipsImage *image, const dsr_metadata *m, int grey) {
    if (!m) return;
    if (m->exif && m->exif_len) {
        unsigned char *copy = g_malloc(m->exif_len);
        memcpy(copy, m->exif, m->exif_len);
        dsr_exif_set_upright(copy, m->exif_len);
        vips_image_set_blob(image, VIPS_META_EXIF_NAME, (VipsCallbackFn)g_free, copy, m->exif_len);
        vips_image_set_int(image, VIPS_META_ORIENTATION, 1);
    }
    if (m->xmp && m->xmp_len) vips_image_set_blob_copy(image, VIPS_META_XMP_NAME, m->xmp, m->xmp_len);
    if (m->iptc && m->iptc_len) vips_image_set_blob_copy(image, VIPS_META_IPTC_NAME, m->iptc, m->iptc_len);
    /* An RGB profile never goes with a grey output. */
    if (m->icc && m->icc_len && !grey) vips_image_set_blob_copy(image, VIPS_META_ICC_NAME, m->icc, m->icc_len);
}

static int dsr_encode(const float *color, const float *alpha, int width, int height, int depth16, int grey, int format,
                      int quality, const dsr_metadata *meta, const char *path, void **out_buf, size_t *out_len,
                      char *err, size_t errlen) {
    if (width <= 0 || height <= 0 || !color) {
        snprintf(err, errlen, "cannot encode an empty image (%dx%d)", width, height);
        return -1;
    }
    if (format < DSR_FORMAT_PNG || format > DSR_FORMAT_TIFF) {
        snprintf(err, errlen, "unknown output format %d", format);
        return -1;
    }
    const size_t plane = (size_t)width * height;
    dsr_encode_ctx e;
    memset(&e, 0, sizeof e);
    e.r = color;
    e.g = color + plane;
    e.b = color + 2 * plane;
    e.alpha = alpha;
    e.width = width;
    e.grey = grey ? 1 : 0;
    e.depth16 = (depth16 && (format == DSR_FORMAT_PNG || format == DSR_FORMAT_TIFF)) ? 1 : 0;
    e.with_alpha = (alpha && format != DSR_FORMAT_JPEG) ? 1 : 0;
    e.flatten = (alpha && format == DSR_FORMAT_JPEG) ? 1 : 0;
    if (quality < 1) quality = 1;
    if (quality > 100) quality = 100;

    VipsImage *image = dsr_planar_source(&e, width, height);
    if (!image) {
        dsr_set_error(err, errlen, "cannot build the output image");
        return -1;
    }
    dsr_attach_metadata(image, meta, e.grey);
    /* Metadata given and all empty: the source had none (or it was stripped): write none, not even libvips's own
     * minimal EXIF block. */
    const gboolean strip = meta && !meta->exif_len && !meta->xmp_len && !meta->iptc_len && !meta->icc_len;
    const int bitdepth = e.depth16 ? 16 : 8;
    const int deflate = VIPS_FOREIGN_TIFF_COMPRESSION_DEFLATE, horizontal = VIPS_FOREIGN_TIFF_PREDICTOR_HORIZONTAL;
    int rc = -1;
    /* JPEG: no optimize_coding, or libjpeg buffers every DCT coefficient of the image (~290 MB at 8000x6000). */
    if (path) {
        switch (format) {
        case DSR_FORMAT_PNG:
            rc = vips_pngsave(image, path, "compression", 6, "bitdepth", bitdepth, "strip", strip, NULL);
            break;
        case DSR_FORMAT_JPEG: rc = vips_jpegsave(image, path, "Q", quality, "strip", strip, NULL); break;
        case DSR_FORMAT_WEBP: rc = vips_webpsave(image, path, "Q", quality, "strip", strip, NULL); break;
        case DSR_FORMAT_TIFF:
            rc = vips_tiffsave(image, path, "compression", deflate, "predictor", horizontal, "strip", strip, NULL);
            break;
        }
    } else {
        switch (format) {
        case DSR_FORMAT_PNG:
            rc = vips_pngsave_buffer(image, out_buf, out_len, "compression", 6, "bitdepth", bitdepth, NULL);
            break;
        case DSR_FORMAT_JPEG: rc = vips_jpegsave_buffer(image, out_buf, out_len, "Q", quality, NULL); break;
        case DSR_FORMAT_WEBP: rc = vips_webpsave_buffer(image, out_buf, out_len, "Q", quality, NULL); break;
        case DSR_FORMAT_TIFF:
            rc = vips_tiffsave_buffer(image, out_buf, out_len, "compression", deflate, "predictor", horizontal, NULL);
            break;
        }
    }
    g_object_unref(image);
    if (rc != 0) {
        dsr_set_error(err, errlen, "encode failed");
        return -1;
    }
    return 0;
}

int dsr_encode_file(const float *color, const float *alpha, int width, int height, int depth16, int grey, int format,
                    int quality, const char *path, char *err, size_t errlen) {
    return dsr_encode(color, alpha, width, height, depth16, grey, format, quality, NULL, path, NULL, NULL, err, errlen);
}

int dsr_encode_file_with_metadata(const float *color, const float *alpha, int width, int height, int depth16, int grey,
                                  int format, int quality, const dsr_metadata *meta, const char *path, char *err,
                                  size_t errlen) {
    return dsr_encode(color, alpha, width, height, depth16, grey, format, quality, meta, path, NULL, NULL, err, errlen);
}

int dsr_encode_buffer(const float *color, const float *alpha, int width, int height, int depth16, int grey,
                      int format, int quality, void **out_buf, size_t *out_len, char *err, size_t errlen) {
    *out_buf = NULL;
    *out_len = 0;
    return dsr_encode(color, alpha, width, height, depth16, grey, format, quality, NULL, NULL, out_buf, out_len, err,
                      errlen);
}

void dsr_free_buffer(void *buf) { g_free(buf); }

/* A JPEG thumbnail of a file, at most max_side pixels on its longer side: vips_thumbnail shrinks on load where the
 * format allows it (JPEG, WebP, HEIF) and streams otherwise; orientation applied, colour to sRGB, metadata dropped. */
int dsr_thumbnail_jpeg(const char *path, int max_side, void **out_buf, size_t *out_len, char *err, size_t errlen) {
    *out_buf = NULL;
    *out_len = 0;
    VipsImage *thumb = NULL;
    if (vips_thumbnail(path, &thumb, max_side, "height", max_side, "export_profile", "srgb", NULL) != 0) {
        dsr_set_error(err, errlen, "thumbnail failed");
        return -1;
    }
    VipsImage *flat = thumb;
    if (vips_image_hasalpha(thumb)) {
        double white[3] = {255, 255, 255};
        VipsArrayDouble *bg = vips_array_double_new(white, 3);
        int rc = vips_flatten(thumb, &flat, "background", bg, NULL);
        vips_area_unref(VIPS_AREA(bg));
        if (rc != 0) {
            g_object_unref(thumb);
            dsr_set_error(err, errlen, "thumbnail flatten failed");
            return -1;
        }
    }
    int rc = vips_jpegsave_buffer(flat, out_buf, out_len, "Q", 80, "strip", TRUE, NULL);
    if (flat != thumb) g_object_unref(flat);
    g_object_unref(thumb);
    if (rc != 0) {
        dsr_set_error(err, errlen, "thumbnail encode failed");
        return -1;
    }
    return 0;
}

/* MARK: health */

int dsr_health_check(char *err, size_t errlen) {
    enum { W = 8, H = 8 };
    float planes[3 * W * H];
    for (int i = 0; i < W * H; i++) {
        planes[i] = 1.0f;              /* R */
        planes[W * H + i] = 0.5f;      /* G */
        planes[2 * W * H + i] = 0.0f;  /* B */
    }
    dsr_encode_ctx e;
    memset(&e, 0, sizeof e);
    e.r = planes;
    e.g = planes + W * H;
    e.b = planes + 2 * W * H;
    e.width = W;
    VipsImage *image = dsr_planar_source(&e, W, H);
    if (!image) {
        dsr_set_error(err, errlen, "health: cannot build an image");
        return -1;
    }
    void *buf = NULL;
    size_t len = 0;
    int rc = vips_pngsave_buffer(image, &buf, &len, NULL);
    g_object_unref(image);
    if (rc != 0) {
        dsr_set_error(err, errlen, "health: PNG encode failed");
        return -1;
    }
    VipsImage *back = vips_image_new_from_buffer(buf, len, "", NULL);
    if (!back) {
        g_free(buf);
        dsr_set_error(err, errlen, "health: PNG decode failed");
        return -1;
    }
    double *vec = NULL;
    int n = 0;
    rc = vips_getpoint(back, &vec, &n, 3, 5, NULL);
    g_object_unref(back);
    g_free(buf);
    if (rc != 0) {
        dsr_set_error(err, errlen, "health: reading a pixel failed");
        return -1;
    }
    const int ok = n == 3 && vec[0] == 255.0 && vec[1] == 128.0 && vec[2] == 0.0;
    if (!ok) snprintf(err, errlen, "health: round trip gave (%g,%g,%g), expected (255,128,0)", n > 0 ? vec[0] : -1,
                      n > 1 ? vec[1] : -1, n > 2 ? vec[2] : -1);
    g_free(vec);
    return ok ? 0 : -1;
}
