/* Starting a process without waiting for its exec: clone(CLONE_VM) on the caller's
thread, for the spawn pool (spawnpool.h).

glibc's posix_spawn uses CLONE_VM | CLONE_VFORK: the child borrows the engine's memory
(nothing is copied, so it is fast) and the calling thread sleeps until the child has
exec'd. With 16 steps running on 2 cores that sleep is as long as the child waits for a
CPU, which is why the pool has threads, and their wake-ups and context switches cost
the engine more CPU than make spends in all (perf, docs/performance.md). Without
CLONE_VFORK the caller goes on at once and needs no thread: `vc_start` returns as soon
as the kernel has made the child, with its pidfd (CLONE_PIDFD).

The price is care. Until it execs, the child runs on its own small stack (`stack`) in
the engine's memory while the engine keeps running, so it:
- makes raw system calls only (inline assembly): no libc function, whose errno, locks or
  lazily bound symbols are the engine's too;
- reads only the vc_args block and its own stack, which the caller keeps until the
  kernel clears `ctid` (CLONE_CHILD_CLEARTID: on the child's exec and on its exit);
- starts with every signal blocked (the caller blocks them around the clone): the
  engine's handlers must never run in it. It puts every caught signal back to its
  default, SIGPIPE and SIGXFSZ too (Python ignores them; `yes | head` must not print
  "Broken pipe"), and unblocks all just before exec. Other ignored signals stay ignored
  (`nohup dagfast run`), as with posix_spawn and Python's subprocess.
What it sets up is what the posix_spawn path sets up: its own process group, stdin from
/dev/null, stdout and stderr the two given descriptors, nothing else open, the working
directory (made, with its parents, when missing, as Dagu does). A failure before exec
leaves its errno in `err` and the child exits with status 127.

x86_64 and aarch64 only (the two system call conventions below); elsewhere VC_ENABLED
is 0 and the pool keeps posix_spawn.
*/
#ifndef DAGFAST_VMCLONE_H
#define DAGFAST_VMCLONE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#define VC_ENABLED 1
#else
#define VC_ENABLED 0
#endif

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* The child's stack: its frame holds a path buffer for mkdir -p and little else. */
#define VC_STACK_SIZE (32 * 1024)
#define VC_PATH_MAX 4096

typedef struct vc_args {
    const char *path; /* the program */
    const char *cwd;
    char *const *argv;
    char *const *envp;
    int out_fd, err_fd; /* become the child's stdout and stderr */
    volatile int err;   /* written by the child: the errno that stopped it before exec */
    volatile pid_t ctid; /* nonzero until the child has exec'd or exited */
} vc_args;

#if VC_ENABLED

#if defined(__x86_64__)
static inline long vc_sys(long n, long a, long b, long c, long d) {
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ __volatile__("syscall"
                         : "=a"(ret)
                         : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                         : "rcx", "r11", "memory");
    return ret;
}
#else /* __aarch64__ */
static inline long vc_sys(long n, long a, long b, long c, long d) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ __volatile__("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}
#endif

/* The kernel's struct sigaction on both architectures (both define sa_restorer). */
typedef struct vc_sigaction {
    unsigned long handler;
    unsigned long flags;
    unsigned long restorer;
    unsigned long mask;
} vc_sigaction;

/* mkdir -p in the child (no libc: byte loops only); 0 or a negative errno. */
__attribute__((optimize("no-tree-loop-distribute-patterns"))) static long
vc_mkdir_p(const char *path) {
    char buf[VC_PATH_MAX];
    long n = 0;
    while (path[n]) {
        if (n + 1 >= VC_PATH_MAX) return -ENAMETOOLONG;
        buf[n] = path[n];
        n++;
    }
    buf[n] = 0;
    for (long i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        long r = vc_sys(SYS_mkdirat, AT_FDCWD, (long)buf, 0777, 0);
        if (r < 0 && r != -EEXIST) return r;
        buf[i] = c;
    }
    return 0;
}

/* A descriptor moved to 3 or above (the child's 0-2 are about to be replaced). */
static long vc_high(int fd) {
    return fd >= 3 ? fd : vc_sys(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 3, 0);
}

__attribute__((optimize("no-tree-loop-distribute-patterns"))) static int
vc_child(void *arg) {
    vc_args *a = arg;
    long r;
    vc_sigaction dfl = {0, 0, 0, 0}, old;
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        if (sig != SIGPIPE && sig != SIGXFSZ) {
            if (vc_sys(SYS_rt_sigaction, sig, 0, (long)&old, 8) < 0) continue;
            if (old.handler == (unsigned long)SIG_DFL || old.handler == (unsigned long)SIG_IGN)
                continue;
        }
        vc_sys(SYS_rt_sigaction, sig, (long)&dfl, 0, 8);
    }
    vc_sys(SYS_setpgid, 0, 0, 0, 0);
    long out = vc_high(a->out_fd), err = out < 0 ? out : vc_high(a->err_fd);
    r = err < 0 ? err : vc_sys(SYS_openat, AT_FDCWD, (long)"/dev/null", O_RDONLY, 0);
    if (r < 0) goto fail;
    if (r != 0) {
        long fd = r;
        r = vc_sys(SYS_dup3, fd, 0, 0, 0);
        if (r < 0) goto fail;
        vc_sys(SYS_close, fd, 0, 0, 0);
    }
    /* dup3 leaves the copies without close-on-exec: only they reach the step. */
    if ((r = vc_sys(SYS_dup3, out, 1, 0, 0)) < 0) goto fail;
    if ((r = vc_sys(SYS_dup3, err, 2, 0, 0)) < 0) goto fail;
    /* Nothing else the engine holds, or its caller left open, reaches the step. */
    if ((r = vc_sys(SYS_close_range, 3, ~0U, 0, 0)) < 0) goto fail;
    r = vc_sys(SYS_chdir, (long)a->cwd, 0, 0, 0);
    if (r == -ENOENT) {
        r = vc_mkdir_p(a->cwd);
        if (r == 0) r = vc_sys(SYS_chdir, (long)a->cwd, 0, 0, 0);
    }
    if (r < 0) goto fail;
    uint64_t none = 0;
    vc_sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, 8);
    r = vc_sys(SYS_execve, (long)a->path, (long)a->argv, (long)a->envp, 0);
fail:
    a->err = (int)-r;
    for (;;) vc_sys(SYS_exit, 127, 0, 0, 0);
    return 0;
}

/* Whether this kernel has what the child needs (close_range: Linux 5.9). */
static int vc_supported(void) {
    return syscall(SYS_close_range, ~0U, ~0U, 0) == 0;
}

/* Start the child described by `a` on the malloc'd `stack` (VC_STACK_SIZE bytes); its
   pid, with its pidfd in *pidfd, or -1 and errno (EINVAL: a kernel without
   CLONE_PIDFD). `a` and `stack` stay untouched and allocated until a->ctid is 0. */
static pid_t vc_start(vc_args *a, void *stack, int *pidfd) {
    uint64_t all = ~(uint64_t)0, saved;
    a->err = 0;
    a->ctid = 1;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &saved, 8);
    pid_t pid = clone(vc_child, (char *)stack + VC_STACK_SIZE,
                      CLONE_VM | CLONE_PIDFD | CLONE_CHILD_CLEARTID | SIGCHLD, a, pidfd,
                      NULL, &a->ctid);
    int e = errno;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &saved, NULL, 8);
    if (pid < 0) {
        a->ctid = 0;
        errno = e;
        return -1;
    }
    /* Its group exists before we return, whoever runs first: a stop signals the group
       at once (the child's own setpgid may come later; after its exec this one fails
       harmlessly). */
    setpgid(pid, pid);
    return pid;
}

/* Whether the child has left the engine's memory (exec'd or exited). */
static inline int vc_done(const vc_args *a) {
    return __atomic_load_n(&a->ctid, __ATOMIC_ACQUIRE) == 0;
}

#else /* !VC_ENABLED */

static int vc_supported(void) { return 0; }
static pid_t vc_start(vc_args *a, void *stack, int *pidfd) {
    (void)a;
    (void)stack;
    (void)pidfd;
    errno = ENOSYS;
    return -1;
}
static inline int vc_done(const vc_args *a) { return 1; }

#endif
#endif
