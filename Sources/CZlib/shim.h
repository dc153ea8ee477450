#ifndef DREAMSR_CZLIB_SHIM_H
#define DREAMSR_CZLIB_SHIM_H
#include <zlib.h>

/* inflateInit2 is a macro (Swift cannot call it): this wrapper passes the header's version and stream size. */
static inline int dreamsr_inflate_init2(z_streamp stream, int window_bits) {
    return inflateInit2(stream, window_bits);
}

#endif
