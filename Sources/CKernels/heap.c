#include "ck_heap.h"

#include <stdlib.h> /* defines __GLIBC__ on glibc */

#if defined(__GLIBC__)
#include <malloc.h>

int ck_heap_trim(void) { return malloc_trim(0); }
#else
int ck_heap_trim(void) { return 0; }
#endif
