#include "dreamsr_build_info.h"

#ifndef DREAMSR_BUILD_COMMIT
#define DREAMSR_BUILD_COMMIT "unknown"
#endif

const char *dreamsr_build_commit(void) { return DREAMSR_BUILD_COMMIT; }
