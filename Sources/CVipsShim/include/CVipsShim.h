#ifndef DREAMSR_CVIPSSHIM_H
#define DREAMSR_CVIPSSHIM_H
/* Non-variadic wrappers over the libvips operations dreamsr uses (Swift cannot call variadic C functions). */
#include <vips/vips.h>
int dsr_vips_init(const char *argv0);
#endif
