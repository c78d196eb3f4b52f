/* The guardian behind dagfast.exec.guardian: a process forked once at the start of a
top-level run that ends the run's steps if the engine dies without saying goodbye
(kill -9, the OOM killer, a crash).

Why a process, and why this shape: nothing in the engine runs after SIGKILL, and the
steps are not its children's children in any way the kernel tracks (each leads its own
process group, and some leave it with setsid). So a second process waits on the read
end of a pipe whose only write end the engine holds (O_CLOEXEC, and steps get nothing
past descriptor 2): the kernel closes it when the engine dies, however it dies, and the
read returns end-of-file. A byte read instead means the run ended and the guardian
stands down, leaving a finished run's background children alone.

It cannot know the steps' process groups without a message per step (a cost on the hot
path), so on end-of-file it finds them the way `dagfast retry` finds leftovers: every
process whose environment holds DAG_RUN_ID=<run id> (or <run id>.<...>, a sub-DAG's
run) is killed with its process group. Only processes started before the engine died
are touched: a `retry` of the same run, started later, keeps its steps.

The child never returns to Python: after fork it makes system calls only (no malloc,
no locks, no stdio), so it is safe whatever threads the parent had.
*/
#ifndef DAGFAST_GUARDIAN_H
#define DAGFAST_GUARDIAN_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define GD_ID_MAX 256
#define GD_PASSES 20 /* sweeps after a death, until one finds nothing */

static char gd_tag[16 + GD_ID_MAX]; /* "DAG_RUN_ID=<run id>" */
static size_t gd_taglen;
static long gd_hz;
static pid_t gd_engine_group;
static unsigned char gd_buf[65536];

/* "/proc/<pid>/<what>" into `out` (64 bytes), without stdio. */
static void gd_path(char *out, const char *pid, const char *what) {
    size_t a = strlen(pid), b = strlen(what);
    if (a + b + 8 > 64) a = b = 0;
    memcpy(out, "/proc/", 6);
    memcpy(out + 6, pid, a);
    out[6 + a] = '/';
    memcpy(out + 7 + a, what, b + 1);
}

/* Whether the NUL-separated environment in `fd` has an entry equal to the tag, or
   starting with the tag and a dot. Streams: no size limit, no allocation. */
static int gd_environ_matches(int fd) {
    long pos = 0; /* tag bytes matched in this entry; -1: this entry is not it */
    for (;;) {
        ssize_t n = read(fd, gd_buf, sizeof gd_buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return pos == (long)gd_taglen;
        for (ssize_t i = 0; i < n; i++) {
            unsigned char c = gd_buf[i];
            if (c == 0) {
                if (pos == (long)gd_taglen) return 1;
                pos = 0;
            } else if (pos < 0) {
                continue;
            } else if (pos == (long)gd_taglen) {
                if (c == '.') return 1;
                pos = -1;
            } else {
                pos = (unsigned char)gd_tag[pos] == c ? pos + 1 : -1;
            }
        }
    }
}

/* Process group and start time (clock ticks since boot) of `pid`; -1 if gone. */
static int gd_stat(const char *dir, pid_t *pgrp, unsigned long long *start) {
    char path[64], buf[1024];
    gd_path(path, dir, "stat");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
    if (!p) return -1;
    p++;
    /* Fields after the name: state(3) ppid(4) pgrp(5) ... starttime(22). */
    unsigned long long v = 0;
    int field = 2;
    while (*p && field < 22) {
        while (*p == ' ') p++;
        field++;
        v = 0;
        while (*p && *p != ' ') {
            if (*p >= '0' && *p <= '9') v = v * 10 + (unsigned)(*p - '0');
            p++;
        }
        if (field == 5) *pgrp = (pid_t)v;
    }
    if (field != 22) return -1;
    *start = v;
    return 0;
}

/* Kill every process of the run started no later than tick `died`, with its process
   group; how many were found. */
static int gd_sweep(unsigned long long died) {
    int found = 0;
    pid_t me = getpid();
    int dfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return 0;
    static char ents[32768];
    for (;;) {
        long n = syscall(SYS_getdents64, dfd, ents, sizeof ents);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            /* struct linux_dirent64: ino(8) off(8) reclen(2) type(1) name */
            unsigned short reclen;
            memcpy(&reclen, ents + off + 16, sizeof reclen);
            const char *name = ents + off + 19;
            off += reclen;
            if (name[0] < '1' || name[0] > '9') continue;
            pid_t pid = 0;
            const char *q = name;
            while (*q >= '0' && *q <= '9') pid = pid * 10 + (*q++ - '0');
            if (*q || pid == me) continue;
            char path[64];
            gd_path(path, name, "environ");
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) continue; /* gone, or not ours to read */
            int hit = gd_environ_matches(fd);
            close(fd);
            pid_t pgrp = 0;
            unsigned long long start = 0;
            if (!hit || gd_stat(name, &pgrp, &start) < 0) continue;
            if (start > died) continue; /* started after the death: a retry's */
            found++;
            /* The group the engine was started in holds the user's other processes
               (a pipeline's reader): a step that joined it is killed alone. */
            if (pgrp > 1 && pgrp != gd_engine_group) kill(-pgrp, SIGKILL);
            kill(pid, SIGKILL);
        }
    }
    close(dfd);
    return found;
}

extern char **environ;

static void gd_main(int rfd) {
    /* Not one of the run's processes for anyone reading /proc: when this engine is itself
       a step of another run, that run's guardian (or `retry`) must end this engine, not
       the guardian that will end this engine's steps. The strings are the ones
       /proc/<pid>/environ shows (our copy, after fork). */
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "DAG_RUN_", 8) == 0) (*e)[0] = '_';
    }
    /* Its own process group: a Ctrl-C or a signal to the engine's group is the
       engine's to handle, and must not take the guardian with it. */
    setpgid(0, 0);
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGQUIT, &ign, NULL);
    sigaction(SIGHUP, &ign, NULL);
    sigaction(SIGPIPE, &ign, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Hold nothing of the engine's: its pipes' readers must see their end, its locks
       must go with it, and its working directory must stay unmountable. */
    if (rfd != 3) {
        dup2(rfd, 3);
        rfd = 3;
    }
    if (syscall(SYS_close_range, 4U, ~0U, 0U) < 0) {
        for (int fd = 4; fd < 65536; fd++) close(fd);
    }
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 3) close(null);
    }
    if (chdir("/") < 0) { /* nothing to do about it */ }
    prctl(PR_SET_NAME, "dagfast-guard", 0, 0, 0);
    char b;
    ssize_t n;
    do n = read(rfd, &b, 1);
    while (n < 0 && errno == EINTR);
    if (n != 0) _exit(0); /* the run ended and said so (or the pipe broke): stand down */
    struct timespec now;
    clock_gettime(CLOCK_BOOTTIME, &now);
    /* One tick of slack: a step started in the tick the engine died is still its. */
    unsigned long long died =
        (unsigned long long)now.tv_sec * (unsigned long long)gd_hz +
        (unsigned long long)now.tv_nsec / (1000000000ULL / (unsigned long long)gd_hz) + 1;
    /* Again until a sweep finds nothing: a step may have forked while it was killed. */
    for (int pass = 0; pass < GD_PASSES && gd_sweep(died); pass++) {
        struct timespec pause = {0, 5 * 1000000L};
        nanosleep(&pause, NULL);
    }
    _exit(0);
}

/* Fork the guardian of run `id`; its pid, with the write end of its pipe in *wfd.
   -1 with errno set when it cannot start. */
static pid_t gd_start(const char *id, int *wfd) {
    size_t n = strlen(id);
    if (n == 0 || n >= GD_ID_MAX) {
        errno = EINVAL;
        return -1;
    }
    memcpy(gd_tag, "DAG_RUN_ID=", 11);
    memcpy(gd_tag + 11, id, n);
    gd_taglen = 11 + n;
    gd_hz = sysconf(_SC_CLK_TCK);
    if (gd_hz <= 0) gd_hz = 100;
    gd_engine_group = getpgrp();
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(fds[0]);
        close(fds[1]);
        errno = saved;
        return -1;
    }
    if (pid == 0) {
        close(fds[1]);
        gd_main(fds[0]);
    }
    close(fds[0]);
    *wfd = fds[1];
    return pid;
}

#endif
