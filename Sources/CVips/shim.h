#ifndef DREAMSR_CVIPS_SHIM_H
#define DREAMSR_CVIPS_SHIM_H
#include <vips/vips.h>
#endif
