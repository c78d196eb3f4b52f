/* The spawn pool behind dagfast._spawn: starts step processes and watches them.

Where the system allows (vmclone.h), a job starts on the submitting thread (the event
loop's) with clone(CLONE_VM), which returns as soon as the child exists: no thread, no
wait for its exec. The job's block and the child's stack are kept until the kernel says
the child has left the engine's memory (exec or exit), on a list freed oldest first.

Elsewhere, and for a start refused with EAGAIN (which waits for room, patiently), the
pool's threads run glibc's posix_spawn, which is vfork-based: the thread that calls it
waits until the child has set up its descriptors and reached exec. On 2 cores with 16
steps running that window was 0.4-1 ms, and one thread spawning back to back ran about
1,100 `sh -c true` a second; two to four threads keep two to four windows open at once
and reach 2,000+. The threads never touch Python: the event loop's thread hands them
jobs (one malloc'd block each) and learns of each process through its pidfd, which is
registered in the loop's epoll set with the job's token in the event data.

Everything shared (the queue, the token table, the list of process groups) is guarded
by one mutex, and no call made under it blocks. The vmclone list and `live` belong to
the loop's thread alone.

Process groups and pid reuse: a running step's group is its leader's pid, safe to signal
until the leader is reaped. A group that outlives its leader (a step's background
children) is kept in `groups`; its number cannot be given to a new process while any
member lives, so when a process with that pid exists the group is gone and the number
reused: such entries are dropped, never signalled.
*/
#ifndef DAGFAST_SPAWNPOOL_H
#define DAGFAST_SPAWNPOOL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "outstore.h"
#include "vmclone.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* Event data of the pool's own eventfd in the epoll set (a pidfd entry carries
   token << 32 | fd, and tokens are below 2^31). */
#define SP_WAKE_MARK UINT64_MAX

/* Token states. */
#define SP_IDLE 0
#define SP_PENDING 1 /* queued or being spawned */
#define SP_RUNNING 2

/* How long a worker keeps retrying a spawn that failed with EAGAIN (the user's
   process limit, or the kernel's) before it gives up on the step, in milliseconds. */
#define SP_EAGAIN_PATIENCE_MS 60000

typedef struct sp_job {
    struct sp_job *next;
    int token;
    int err;        /* errno of a failed spawn, 0 otherwise */
    int watch_err;  /* 1: the process started but could not be watched (pidfd_open) */
    int cancel_sig; /* > 0: never started, a stop or timeout (this signal) came first */
    int out_fd;     /* the write ends of the step's stdout and stderr pipes into the */
    int err_fd;     /* output store, while the worker starts it (-1: none yet) */
    char *path;     /* the program to exec */
    char *cwd;
    char **argv;
    char **envp;
    /* Started by vc_start (vmclone.h): what its child reads until it has exec'd, the
       child's stack (NULL once freed), and where the job is kept meanwhile. */
    vc_args vc;
    void *stack;
    struct sp_job *fnext; /* the pool's list of jobs whose children may not have exec'd */
    int in_flight;        /* on that list */
    int detached;         /* reaped while on that list: freed when it leaves */
    /* the strings and pointer arrays follow in the same block */
} sp_job;

typedef struct sp_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sp_job *head, *tail;     /* jobs waiting for a worker */
    sp_job *failed;          /* jobs that could not start, for the loop */
    int stopping;
    int nthreads;
    pthread_t threads[8];
    int epfd;                /* the loop's epoll set (pidfds + our eventfd) */
    os_store *store;         /* where the jobs' output goes (not owned) */
    int evfd;                /* wakes the loop when a job failed */
    /* token table */
    int cap;
    pid_t *pids;             /* token -> pid while running */
    int *pidfds;             /* token -> its pidfd while running */
    unsigned char *state;    /* token -> SP_* */
    int *pendsig;            /* token -> a signal asked for while it was pending */
    /* groups whose leader was reaped while members lived, for a stop */
    pid_t *groups;
    int ngroups, capgroups;
    unsigned reaps;
    /* Starting without waiting for exec (vmclone.h), on the loop's thread only: */
    int vmclone;             /* 1: every start is vc_start on the calling thread */
    sp_job **live;           /* token -> its vc_start'ed job, until reaped */
    sp_job *fhead, *ftail;   /* vc_start'ed jobs, oldest first, until their exec */
} sp_pool;

static int sp_grow_locked(sp_pool *p, int token) {
    if (token < p->cap) return 0;
    int cap = p->cap ? p->cap : 64;
    while (cap <= token) cap *= 2;
    pid_t *pids = realloc(p->pids, (size_t)cap * sizeof(pid_t));
    if (!pids) return -1;
    p->pids = pids;
    unsigned char *state = realloc(p->state, (size_t)cap);
    if (!state) return -1;
    p->state = state;
    int *pendsig = realloc(p->pendsig, (size_t)cap * sizeof(int));
    if (!pendsig) return -1;
    p->pendsig = pendsig;
    int *pidfds = realloc(p->pidfds, (size_t)cap * sizeof(int));
    if (!pidfds) return -1;
    p->pidfds = pidfds;
    sp_job **live = realloc(p->live, (size_t)cap * sizeof(sp_job *));
    if (!live) return -1;
    p->live = live;
    memset(p->live + p->cap, 0, (size_t)(cap - p->cap) * sizeof(sp_job *));
    memset(p->pidfds + p->cap, 0xff, (size_t)(cap - p->cap) * sizeof(int));
    memset(p->pids + p->cap, 0, (size_t)(cap - p->cap) * sizeof(pid_t));
    memset(p->state + p->cap, 0, (size_t)(cap - p->cap));
    memset(p->pendsig + p->cap, 0, (size_t)(cap - p->cap) * sizeof(int));
    p->cap = cap;
    return 0;
}

/* The token's start is pending from now on; -1 when the table cannot grow. */
static int sp_claim_locked(sp_pool *p, int token) {
    if (sp_grow_locked(p, token) < 0) return -1;
    p->state[token] = SP_PENDING;
    p->pendsig[token] = 0;
    p->pids[token] = 0;
    return 0;
}

static void sp_fail_locked(sp_pool *p, sp_job *job) {
    job->next = p->failed;
    p->failed = job;
    p->state[job->token] = SP_IDLE;
    p->pendsig[job->token] = 0;
    uint64_t one = 1;
    ssize_t r = write(p->evfd, &one, sizeof one);
    (void)r;
}

/* The signal a stop or timeout asked for while the job waited, or -1 for a pool that
   is closing; 0 when the job should still start. */
static int sp_cancelled(sp_pool *p, int token) {
    pthread_mutex_lock(&p->mu);
    int sig = p->stopping ? -1 : p->pendsig[token];
    pthread_mutex_unlock(&p->mu);
    return sig;
}

/* posix_spawn; with `patient`, a start refused with EAGAIN is retried (with backoff,
   for up to SP_EAGAIN_PATIENCE_MS) until it succeeds or the job is cancelled
   (ECANCELED). */
static int sp_posix_spawn(sp_pool *p, sp_job *job, pid_t *pid, int patient) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dfl;
    int rc;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    /* stdin, the output pipes, then the working directory. */
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    /* dup2 clears close-on-exec on the copies: only they reach the step. */
    posix_spawn_file_actions_adddup2(&fa, job->out_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, job->err_fd, 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    /* Nothing else the engine's caller left open (a CI harness's pipe, a make
       jobserver) reaches the step: a background child holding it could hang the caller. */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
    posix_spawn_file_actions_addchdir_np(&fa, job->cwd);
    /* Its own process group, no signal blocked, and SIGPIPE and SIGXFSZ back at their
       defaults: Python ignores them, and a step must not inherit that (`yes | head`
       would print "Broken pipe"). Other ignored signals are the caller's choice
       (`nohup dagfast run ...`) and stay ignored, as with Python's subprocess. */
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGXFSZ);
    posix_spawnattr_setflags(
        &at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    long waited = 0, pause_ms = 1;
    for (;;) {
        rc = posix_spawn(pid, job->path, &fa, &at, job->argv, job->envp);
        if (rc != EAGAIN || !patient || waited >= SP_EAGAIN_PATIENCE_MS) break;
        int sig = sp_cancelled(p, job->token);
        if (sig) {
            job->cancel_sig = sig > 0 ? sig : SIGKILL;
            rc = ECANCELED;
            break;
        }
        /* Out of processes for now: wait for some to end rather than fail the step. */
        struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        waited += pause_ms;
        if (pause_ms < 100) pause_ms *= 2;
    }
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

/* A job's two pipes: the write ends go to the child (job->out_fd/err_fd), the read
   ends to `rd`; 0, or -1 and errno. */
static int sp_make_pipes(sp_job *job, int rd[2]) {
    int a[2], b[2];
    if (pipe2(a, O_CLOEXEC) < 0) return -1;
    if (pipe2(b, O_CLOEXEC) < 0) {
        int e = errno;
        close(a[0]);
        close(a[1]);
        errno = e;
        return -1;
    }
    rd[0] = a[0];
    rd[1] = b[0];
    job->out_fd = a[1];
    job->err_fd = b[1];
    return 0;
}

static void sp_drop_pipes(sp_job *job, int rd[2]) {
    for (int k = 0; k < 2; k++)
        if (rd[k] >= 0) close(rd[k]);
    rd[0] = rd[1] = -1;
    if (job->out_fd >= 0) {
        close(job->out_fd);
        close(job->err_fd);
        job->out_fd = job->err_fd = -1;
    }
}

/* mkdir -p: a step's missing working directory is made, as Dagu does. */
static int sp_mkdir_p(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) < 0 && errno != EEXIST) return -1;
            buf[i] = c;
        }
    }
    return 0;
}

static void sp_queue_locked(sp_pool *p, sp_job *job) {
    job->next = NULL;
    if (p->tail) p->tail->next = job;
    else p->head = job;
    p->tail = job;
    pthread_cond_signal(&p->cv);
}

/* The child's stack is no longer needed (its child has left our memory, or never came). */
static void sp_free_stack(sp_job *job) {
    free(job->stack);
    job->stack = NULL;
}

static void sp_job_free(sp_job *job) {
    sp_free_stack(job);
    free(job);
}

/* Free the vc_start'ed jobs whose children have exec'd or exited, oldest first (they
   leave in about the order they came). One whose child failed before exec stays in
   `live` for the reap, which reports it. Loop thread only. */
static void sp_settle(sp_pool *p) {
    while (p->fhead && vc_done(&p->fhead->vc)) {
        sp_job *job = p->fhead;
        p->fhead = job->fnext;
        if (!p->fhead) p->ftail = NULL;
        job->in_flight = 0;
        sp_free_stack(job);
        if (job->detached || !job->vc.err) {
            /* Reaped already, or exec'd: nothing left to report (a failed child stays
               in `live` for the reap). */
            if (!job->detached && p->live[job->token] == job) p->live[job->token] = NULL;
            free(job);
        }
    }
}

/* A reaped job is done with: freed, or once its child has left our memory. */
static void sp_release_child(sp_job *job) {
    if (job->in_flight) job->detached = 1;
    else sp_job_free(job);
}

/* Step `token` was reaped: its job if its child failed before exec (the caller reports
   it, then sp_release_child), else NULL. Loop thread only. */
static sp_job *sp_take_child(sp_pool *p, int token) {
    sp_job *job = token < p->cap ? p->live[token] : NULL;
    if (!job) return NULL;
    p->live[token] = NULL;
    if (job->vc.err) return job;
    sp_release_child(job);
    return NULL;
}

/* vc_start the job: 0 and its pid and pidfd, an errno (EAGAIN: out of processes), or
   -1 when this kernel cannot (no CLONE_PIDFD): posix_spawn from now on. */
static int sp_vmclone(sp_pool *p, sp_job *job, pid_t *pid, int *pidfd) {
    if (!job->stack) job->stack = malloc(VC_STACK_SIZE);
    if (!job->stack) return ENOMEM;
    job->vc.path = job->path;
    job->vc.cwd = job->cwd;
    job->vc.argv = job->argv;
    job->vc.envp = job->envp;
    job->vc.out_fd = job->out_fd;
    job->vc.err_fd = job->err_fd;
    *pid = vc_start(&job->vc, job->stack, pidfd);
    if (*pid < 0) {
        int e = errno;
        if (e != EINVAL && e != ENOSYS) return e;
        p->vmclone = 0;
        return -1;
    }
    return 0;
}

/* Start one job. `inline_`: on the loop's thread, which must never wait out a full
   process table: a start refused with EAGAIN there goes to a worker instead. */
static void sp_run_job(sp_pool *p, sp_job *job, int inline_) {
    pid_t pid;
    int rc, fd = -1, cloned = 0;
    int rd[2] = {-1, -1}; /* the pipes' read ends, for the store */
    int sig = sp_cancelled(p, job->token);
    if (sig) {
        /* Stopped (or timed out) while it waited in the queue: it never starts. */
        job->cancel_sig = sig > 0 ? sig : SIGKILL;
        rc = ECANCELED;
    } else if (sp_make_pipes(job, rd) != 0) {
        rc = errno;
    } else {
        rc = -1;
        if (inline_ && p->vmclone) {
            rc = sp_vmclone(p, job, &pid, &fd);
            cloned = rc == 0;
        }
        if (rc == -1) {
            rc = sp_posix_spawn(p, job, &pid, !inline_);
            struct stat st;
            if (rc == ENOENT && stat(job->cwd, &st) < 0 && errno == ENOENT && sp_mkdir_p(job->cwd) == 0)
                rc = sp_posix_spawn(p, job, &pid, !inline_);
        }
    }
    if (rc == EAGAIN && inline_) {
        sp_drop_pipes(job, rd); /* made again by the worker */
        sp_free_stack(job);
        pthread_mutex_lock(&p->mu);
        sp_queue_locked(p, job);
        pthread_mutex_unlock(&p->mu);
        return;
    }
    if (job->out_fd >= 0) {
        close(job->out_fd); /* the step holds its own copies */
        close(job->err_fd);
        job->out_fd = job->err_fd = -1;
    }
    if (rc != 0) {
        sp_drop_pipes(job, rd);
        sp_free_stack(job);
    } else {
        /* Watched before the loop can learn of the exit (the pidfd comes after). A pipe
           that cannot be watched is closed: the step's writes to it fail (EPIPE). */
        for (int k = 0; k < 2; k++)
            if (os_watch(p->store, (uint32_t)job->token, k, rd[k]) < 0)
                os_note_lost(p->store, (uint32_t)job->token, errno ? errno : ENOMEM);
    }
    if (rc != 0) {
        job->err = rc;
        pthread_mutex_lock(&p->mu);
        sp_fail_locked(p, job);
        pthread_mutex_unlock(&p->mu);
        return;
    }
    if (!cloned) fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
        /* A process we cannot watch (out of descriptors) must not run unwatched. */
        job->err = errno;
        job->watch_err = 1;
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        pthread_mutex_lock(&p->mu);
        sp_fail_locked(p, job);
        pthread_mutex_unlock(&p->mu);
        return;
    }
    int token = job->token;
    pthread_mutex_lock(&p->mu);
    p->pids[token] = pid;
    p->pidfds[token] = fd;
    p->state[token] = SP_RUNNING;
    sig = p->pendsig[token];
    p->pendsig[token] = 0;
    pthread_mutex_unlock(&p->mu);
    if (sig) kill(-pid, sig); /* stopped or timed out before it had started */
    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = ((uint64_t)(uint32_t)token << 32) | (uint32_t)fd;
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        /* Unwatched, it would never end for the engine (the epoll watch limit, or
           memory): like a pidfd that could not be opened. */
        job->err = errno;
        job->watch_err = 1;
        kill(-pid, SIGKILL);
        siginfo_t info;
        while (waitid((idtype_t)P_PIDFD, (id_t)fd, &info, WEXITED) < 0 && errno == EINTR) {}
        close(fd);
        sp_free_stack(job); /* reaped: its child has left our memory */
        pthread_mutex_lock(&p->mu);
        p->pids[token] = 0;
        p->pidfds[token] = -1;
        sp_fail_locked(p, job);
        pthread_mutex_unlock(&p->mu);
        return;
    }
    if (!cloned) {
        free(job);
        return;
    }
    /* Kept until its child has left our memory, and for the reap (a failed exec). */
    p->live[token] = job;
    job->in_flight = 1;
    job->fnext = NULL;
    if (p->ftail) p->ftail->fnext = job;
    else p->fhead = job;
    p->ftail = job;
    sp_settle(p);
}

static void *sp_worker(void *arg) {
    sp_pool *p = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the loop thread's business */
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stopping) pthread_cond_wait(&p->cv, &p->mu);
        sp_job *job = p->head;
        if (!job) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        p->head = job->next;
        if (!p->head) p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        sp_run_job(p, job, 0);
    }
}

/* A new pool of `nthreads` workers registering pidfds in `epfd`; with `vmclone`, jobs
start on the submitting thread through vc_start where the system allows. NULL and
errno set when it cannot be made. */
static sp_pool *sp_new(int nthreads, int epfd, int vmclone) {
    sp_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 8) nthreads = 8;
    p->vmclone = vmclone && vc_supported();
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->epfd = epfd;
    p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->evfd < 0) goto fail;
    struct epoll_event ev;
    ev.events = EPOLLIN;
    ev.data.u64 = SP_WAKE_MARK;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, p->evfd, &ev) < 0) goto fail;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024); /* posix_spawn maps its own child stack */
    for (int i = 0; i < nthreads; i++) {
        int rc = pthread_create(&p->threads[i], &attr, sp_worker, p);
        if (rc != 0) {
            pthread_attr_destroy(&attr);
            errno = rc;
            p->nthreads = i;
            goto fail;
        }
        p->nthreads = i + 1;
    }
    pthread_attr_destroy(&attr);
    return p;
fail:;
    int saved = errno;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    if (p->evfd >= 0) close(p->evfd);
    free(p);
    errno = saved;
    return NULL;
}

/* Where the jobs' output goes from now on (set before the first job). */
static void sp_set_store(sp_pool *p, os_store *s) {
    pthread_mutex_lock(&p->mu);
    p->store = s;
    pthread_mutex_unlock(&p->mu);
}

/* Start a job (the pool owns it from now on): at once on this thread when that does
not wait for the child's exec (vmclone) or when `inline_` asks (nothing else is in
flight, so there is nothing to overlap and a hand-off to a worker would only add a
thread wake-up to the step's latency: a chain); otherwise queued for a worker. -1 when
the token table cannot grow. */
static int sp_submit(sp_pool *p, sp_job *job, int inline_) {
    job->stack = NULL;
    job->in_flight = job->detached = 0;
    pthread_mutex_lock(&p->mu);
    if (sp_claim_locked(p, job->token) < 0) {
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    if (p->vmclone || inline_) {
        pthread_mutex_unlock(&p->mu);
        sp_run_job(p, job, 1);
        return 0;
    }
    sp_queue_locked(p, job);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* The jobs that failed since the last call, oldest last (the loop frees them). */
static sp_job *sp_take_failed(sp_pool *p) {
    uint64_t n;
    ssize_t r = read(p->evfd, &n, sizeof n);
    (void)r;
    pthread_mutex_lock(&p->mu);
    sp_job *failed = p->failed;
    p->failed = NULL;
    pthread_mutex_unlock(&p->mu);
    return failed;
}

/* Signal (0: only check) the groups that outlived their leaders, dropping those that
   are gone or whose number now belongs to someone else; how many remain. */
static int sp_lingering_locked(sp_pool *p, int sig) {
    int alive = 0;
    for (int i = 0; i < p->ngroups; i++) {
        pid_t g = p->groups[i];
        /* A process whose pid is g: our group is empty and its number reused. */
        if (kill(g, 0) == 0 || errno == EPERM) continue;
        /* Gone (ESRCH) or now someone else's (EPERM): dropped either way. */
        if (kill(-g, sig) == 0) p->groups[alive++] = g;
    }
    p->ngroups = alive;
    return alive;
}

/* This process's own peak RSS in KiB (its mm's VmHWM: unlike getrusage's ru_maxrss,
   without what the process that exec'd it held), or 0. */
static long sp_own_hwm_kib(void) {
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *at = strstr(buf, "VmHWM:");
    return at ? strtol(at + 6, NULL, 10) : 0;
}

/* The pid of running `token` (0: none). */
static pid_t sp_pid(sp_pool *p, int token) {
    pthread_mutex_lock(&p->mu);
    pid_t pid = token < p->cap && p->state[token] == SP_RUNNING ? p->pids[token] : 0;
    pthread_mutex_unlock(&p->mu);
    return pid;
}

/* A reaped token is idle again; its group is kept only while members remain. */
static void sp_ended(sp_pool *p, int token) {
    pthread_mutex_lock(&p->mu);
    if (token < p->cap) {
        pid_t pid = p->pids[token];
        p->state[token] = SP_IDLE;
        p->pids[token] = 0;
        p->pidfds[token] = -1;
        if (pid > 0 && kill(-pid, 0) == 0) {
            if (p->ngroups == p->capgroups) {
                int cap = p->capgroups ? p->capgroups * 2 : 64;
                pid_t *g = realloc(p->groups, (size_t)cap * sizeof(pid_t));
                if (g) {
                    p->groups = g;
                    p->capgroups = cap;
                }
            }
            if (p->ngroups < p->capgroups) p->groups[p->ngroups++] = pid;
        }
        if ((++p->reaps & 63) == 0 && p->ngroups) sp_lingering_locked(p, 0);
    }
    pthread_mutex_unlock(&p->mu);
}

/* Signal the group of `token`: now if it runs, right after its spawn if pending.
   Returns 1 if the step had a process (or will have one), 0 otherwise. */
static int sp_signal(sp_pool *p, int token, int sig) {
    pid_t pid = 0;
    int found = 0;
    pthread_mutex_lock(&p->mu);
    if (token < p->cap) {
        if (p->state[token] == SP_RUNNING) {
            pid = p->pids[token];
            found = 1;
        } else if (p->state[token] == SP_PENDING) {
            p->pendsig[token] = sig;
            found = 1;
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (pid > 0) kill(-pid, sig);
    return found;
}

/* Signal every running or pending step's group. */
static void sp_signal_running(sp_pool *p, int sig) {
    pthread_mutex_lock(&p->mu);
    for (int t = 0; t < p->cap; t++) {
        if (p->state[t] == SP_RUNNING) kill(-p->pids[t], sig);
        else if (p->state[t] == SP_PENDING) p->pendsig[t] = sig;
    }
    pthread_mutex_unlock(&p->mu);
}

/* Signal (0: only count) the groups of running steps and those that outlived their
   leaders; returns how many still exist. */
static int sp_signal_groups(sp_pool *p, int sig) {
    int alive = 0;
    pthread_mutex_lock(&p->mu);
    for (int t = 0; t < p->cap; t++) {
        if (p->state[t] == SP_RUNNING && kill(-p->pids[t], sig) == 0) alive++;
    }
    alive += sp_lingering_locked(p, sig);
    pthread_mutex_unlock(&p->mu);
    return alive;
}

/* With `out`: copy up to `max` process group ids (running steps', then those that
   outlived their leaders) into it, and return how many were copied. Without: how many
   there are. */
static int sp_groups(sp_pool *p, pid_t *out, int max) {
    pthread_mutex_lock(&p->mu);
    int n = 0;
    for (int t = 0; t < p->cap; t++) {
        if (p->state[t] != SP_RUNNING) continue;
        if (out && n < max) out[n] = p->pids[t];
        n++;
    }
    for (int i = 0; i < p->ngroups; i++) {
        if (out && n < max) out[n] = p->groups[i];
        n++;
    }
    pthread_mutex_unlock(&p->mu);
    return out && n > max ? max : n;
}

/* Stop the workers (jobs still queued are dropped) and free the pool. */
static void sp_free(sp_pool *p) {
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    sp_job *queued = p->head;
    p->head = p->tail = NULL;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    while (queued) {
        sp_job *next = queued->next;
        if (queued->out_fd >= 0) {
            close(queued->out_fd);
            close(queued->err_fd);
        }
        free(queued);
        queued = next;
    }
    while (p->failed) {
        sp_job *next = p->failed->next;
        free(p->failed);
        p->failed = next;
    }
    for (int t = 0; t < p->cap; t++) {
        /* Processes still running are not waited for, but their pidfds are closed. */
        if (p->state[t] == SP_RUNNING && p->pidfds[t] >= 0) close(p->pidfds[t]);
        sp_job *job = p->live[t];
        if (job && !job->in_flight) sp_job_free(job);
    }
    /* A child still in our memory (it has not exec'd) keeps its block and stack: wait
       for it a while, then leave them to it rather than free what it reads. */
    for (int waited = 0; p->fhead;) {
        sp_job *job = p->fhead;
        if (!vc_done(&job->vc) && waited < 5000) {
            struct timespec ts = {0, 1000000L};
            nanosleep(&ts, NULL);
            waited++;
            continue;
        }
        p->fhead = job->fnext;
        if (vc_done(&job->vc)) sp_job_free(job);
    }
    free(p->live);
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->evfd, NULL);
    close(p->evfd);
    free(p->pidfds);
    free(p->pids);
    free(p->state);
    free(p->pendsig);
    free(p->groups);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

#endif
