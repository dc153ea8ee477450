#ifndef DREAMSR_COPENBLAS_SHIM_H
#define DREAMSR_COPENBLAS_SHIM_H
#include <cblas.h>
/* Declared by OpenBLAS; re-declared here so the Swift side can report the kernel in use. */
char *openblas_get_corename(void);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);
#endif
