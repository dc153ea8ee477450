#ifndef CK_THREAD_H
#define CK_THREAD_H

/* Lowers the calling thread's scheduling priority by `increment` nice steps (Linux: nice is per thread).
   Returns 0 on success, -1 where unsupported or refused. */
int ck_thread_nice(int increment);

/* Names the calling thread (at most 15 bytes are kept; visible in top, perf and /proc). */
void ck_thread_name(const char *name);

#endif
