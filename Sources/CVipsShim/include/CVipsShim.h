#ifndef DREAMSR_CVIPSSHIM_H
#define DREAMSR_CVIPSSHIM_H
/*
 * Non-variadic wrappers over the libvips operations dreamsr uses (Swift cannot call variadic C functions), plus the
 * pixel loops that move data between vips's interleaved uchar/ushort buffers and dreamsr's planar float images.
 * Only the Swift module `Imaging` includes this header.
 *
 * Error convention: functions that can fail take `char *err, size_t errlen` and return 0 on success, -1 on failure
 * with a NUL-terminated message in err (the libvips error buffer, copied and cleared).
 */
#include <stddef.h>
#include <stdint.h>
#include <vips/vips.h>

/* Once per process (pthread_once): vips_init, operation cache off, untrusted loaders blocked. Returns the cached
 * result on later calls. */
int dsr_vips_init(const char *argv0, char *err, size_t errlen);
/* libvips warnings (g_log domain "VIPS", e.g. "error in tile", "ignoring nclx profile") go to `fn` instead of stderr
 * once set; NULL restores GLib's default handler. `fn` is called from libvips worker threads. */
typedef void (*dsr_warning_fn)(const char *domain, const char *message);
void dsr_set_warning_handler(dsr_warning_fn fn);

/* "8.14.1" */
const char *dsr_vips_version_string(void);
size_t dsr_vips_tracked_mem(void);
size_t dsr_vips_tracked_mem_highwater(void);
int dsr_vips_tracked_files(void);

/* Header facts of an opened (not yet decoded) image. */
typedef struct dsr_header {
    int width;          /* as stored (before EXIF orientation) */
    int height;         /* as stored; for multi-page images the height of ONE page */
    int pages;          /* n-pages (1 for single images) */
    int bands;
    int band_format;    /* VipsBandFormat */
    int interpretation; /* VipsInterpretation */
    int bit_depth;      /* what decode will produce: 8 or 16 */
    int has_alpha;
    int is_grey;
    int is_cmyk;
    int has_icc;
    int orientation;    /* EXIF orientation 1...8 (1 when absent or invalid) */
    char loader[64];    /* e.g. "jpegload", "pngload_buffer" */
    char heif_compression[16]; /* "av1" / "hevc" for heifload, "" otherwise */
} dsr_header;

/* Name of the loader libvips would pick for a file / buffer (sniffed from the content), or NULL.
 * Clears the vips error buffer. */
const char *dsr_find_loader_file(const char *path);
const char *dsr_find_loader_buffer(const void *data, size_t len);

/* Open an image lazily (header only, sequential access, fail on truncation). NULL on failure.
 * For a buffer, `data` must stay valid until the image is released. */
VipsImage *dsr_open_file(const char *path, char *err, size_t errlen);
VipsImage *dsr_open_buffer(const void *data, size_t len, char *err, size_t errlen);
void dsr_image_release(VipsImage *image);
void dsr_header_read(VipsImage *image, dsr_header *header);

/* Decode: convert to sRGB (ICC / CMYK / other spaces), 8 or 16 bit as header->bit_depth says, apply EXIF orientation
 * and write planar floats in 0...1. `color` holds 3 planes of out_w*out_h (grey is replicated to all 3), `alpha` one
 * plane or NULL (ignored when the image has no alpha). out_w/out_h are the dimensions after orientation. */
int dsr_decode(VipsImage *image, const dsr_header *header, float *color, float *alpha, int out_w, int out_h,
               char *err, size_t errlen);

/* As dsr_decode, but with keep_profile set an RGB image with an embedded ICC profile keeps its numbers in that
 * profile (no conversion to sRGB: the caller re-attaches the profile to the output). CMYK and grey convert as always. */
int dsr_decode_keeping_profile(VipsImage *image, const dsr_header *header, float *color, float *alpha, int out_w,
                               int out_h, int keep_profile, char *err, size_t errlen);

/* A metadata blob of an opened image ("exif-data", "xmp-data", "iptc-data", "icc-profile-data"): 0 and the bytes
 * (owned by the image, valid while it lives) when present, -1 otherwise. */
int dsr_get_blob(VipsImage *image, const char *name, const void **data, size_t *len);

/* A string field of an opened image as libvips parsed it (e.g. "exif-ifd0-Orientation", "exif-ifd3-GPSLatitudeRef"),
 * copied into buf (NUL-terminated): 0 when present, -1 otherwise. */
int dsr_get_string_field(VipsImage *image, const char *name, char *buf, size_t buflen);

/* Metadata to write with an encoded image (NULL/0 fields are left out). The EXIF orientation tag is set to 1 (the
 * pixels are already turned upright). */
typedef struct dsr_metadata {
    const void *exif; size_t exif_len;
    const void *xmp; size_t xmp_len;
    const void *iptc; size_t iptc_len;
    const void *icc; size_t icc_len;
} dsr_metadata;

enum { DSR_FORMAT_PNG = 0, DSR_FORMAT_JPEG = 1, DSR_FORMAT_WEBP = 2, DSR_FORMAT_TIFF = 3 };

/* Encode planar floats (3 planes `color`, optional 1 plane `alpha`) into `path` (written as given: callers use a
 * temporary name). grey: write one luma channel. depth16: ushort samples (PNG / TIFF only). JPEG has no alpha: a
 * given alpha is flattened onto white. No interleaved full-size copy is made: libvips pulls pixels from the planes. */
int dsr_encode_file(const float *color, const float *alpha, int width, int height, int depth16, int grey, int format,
                    int quality, const char *path, char *err, size_t errlen);

/* dsr_encode_file with metadata (may be NULL). */
int dsr_encode_file_with_metadata(const float *color, const float *alpha, int width, int height, int depth16, int grey,
                                  int format, int quality, const dsr_metadata *meta, const char *path, char *err,
                                  size_t errlen);

/* Same, into memory: on success *out_buf holds *out_len bytes, to be freed with dsr_free_buffer. */
int dsr_encode_buffer(const float *color, const float *alpha, int width, int height, int depth16, int grey,
                      int format, int quality, void **out_buf, size_t *out_len, char *err, size_t errlen);
void dsr_free_buffer(void *buf);

/* A JPEG thumbnail (longer side <= max_side) of a file, into memory; free with dsr_free_buffer. */
int dsr_thumbnail_jpeg(const char *path, int max_side, void **out_buf, size_t *out_len, char *err, size_t errlen);

/* Health probe: build a tiny image with libvips, encode it to PNG in memory, decode it again and check a pixel. */
int dsr_health_check(char *err, size_t errlen);

#endif
