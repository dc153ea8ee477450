#define _GNU_SOURCE
#include "ck_thread.h"

#if defined(__linux__)
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int ck_thread_nice(int increment) {
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int current = getpriority(PRIO_PROCESS, (id_t)tid);
    return setpriority(PRIO_PROCESS, (id_t)tid, current + increment) == 0 ? 0 : -1;
}

void ck_thread_name(const char *name) {
    char buf[16];
    strncpy(buf, name, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    pthread_setname_np(pthread_self(), buf);
}
#else
int ck_thread_nice(int increment) { (void)increment; return -1; }
void ck_thread_name(const char *name) { (void)name; }
#endif
