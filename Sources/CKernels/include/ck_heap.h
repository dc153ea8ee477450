#ifndef CK_HEAP_H
#define CK_HEAP_H

/* Hands the C heap's free pages back to the system (glibc malloc_trim(0), which also releases free pages inside
   arena heaps). Returns 1 when memory was released, 0 when none was or where unsupported. */
int ck_heap_trim(void);

#endif
