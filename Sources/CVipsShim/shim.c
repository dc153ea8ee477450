#include "CVipsShim.h"
int dsr_vips_init(const char *argv0) { return vips_init(argv0); }
