/* A run's output store: every byte its steps print, in one append-only file, with an
index of where each step's bytes are; and the pump that fills it.

Why (see the README's design notes): two new files per step were what held a run of
silent steps at half the speed of a C loop, and left 40,000 files per 20,000 steps. A
pipe costs about what /dev/null costs; appending framed records to one file is cheap
sequential I/O; a step that prints nothing costs no byte of data at all.

The data file (`output`) is a sequence of records, each a 24-byte header and its
payload:

    magic u8 | stream u8 (0 stdout, 1 stderr) | check u16 | token u32 | exec u32 |
    len u32 | prev u64

`token` is the step, `exec` which of its executions (1, 2, ...) printed it, and `prev`
the offset + 1 of the previous record of the same token and stream (0: none), so a
step's records form a chain that is walked from its newest record back: reading one
step's log costs time in its own size, not the run's. `check` guards the header.

The index (`output.idx`) holds one 40-byte slot per token, at token * 40:

    head[2] u64 (offset + 1 of the newest record, per stream) | total[2] u64 (bytes
    appended so far, per stream) | exec u32 (the current execution) | flags u32

It is a shared memory mapping of the file, so updating it costs no system call, and a
kill -9 of the engine loses nothing it holds (the kernel keeps the pages). A record is
written whole (pwritev) before the slot points at it: whatever the index points at is
whole. A write cut short (a full disk, a kill) is not counted, and the next record
overwrites it; `os_open` cuts a torn tail back to the end of the last indexed record.

The pump is one thread with its own epoll set of pipe read ends. It reads what steps
print as it comes (so a step never blocks on a full pipe), masks secrets (holding back
the tail that may be the start of a secret split across writes), and appends records.
The engine's thread may also `os_drain` a step when its process has exited: everything
the process wrote before it exited is then in the store before the engine looks at its
exit, so `output:` capture and error excerpts see it all. One mutex guards the store;
nothing under it blocks except the file writes themselves.

A pipe is read until every writer has closed it, so a background child's output after
its step ended still lands in that step's log (under the same execution), never in
another's. When the run ends the store is closed: what is in the pipes then is read
one last time and later writes of such children fail (EPIPE).
*/
#ifndef DAGFAST_OUTSTORE_H
#define DAGFAST_OUTSTORE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define OS_MAGIC 0xD7
#define OS_HEADER 24
#define OS_SLOT 40
#define OS_READ 65536
/* What one drain reads of a step's pipe at most: more than a pipe holds, so it is
   everything the process wrote before exiting; the rest is a background child's. */
#define OS_DRAIN_MAX (4 * OS_READ)
#define OS_WAKE UINT64_MAX

typedef struct os_pipe {
    struct os_pipe *next, *prev; /* the open pipes; `next` alone in the graveyard */
    int fd;                      /* -1: closed, waiting to be freed by the pump */
    uint32_t token;
    uint32_t exec;
    int stream;
    int tee_fd;       /* >= 0: a file that gets a copy of what is stored (DAG_RUN_STEP_*) */
    size_t carry_len; /* bytes held back: maybe the start of a secret */
    unsigned char *carry;
} os_pipe;

typedef struct os_slot {
    uint64_t head[2];
    uint64_t total[2];
    uint32_t exec;
    uint32_t flags;
} os_slot;

typedef struct os_store {
    pthread_mutex_t mu;
    int data_fd;
    uint64_t end;        /* where the next record goes */
    int idx_fd;
    unsigned char *map;  /* the index, nslots * OS_SLOT bytes */
    size_t nslots;
    os_pipe **cur;       /* token * 2 + stream -> its current execution's pipe */
    int *lost;           /* token -> errno of a write that failed for it (0: none) */
    int *tee;            /* token * 2 + stream -> a file for its next pipe (-1: none) */
    int first_err;       /* the first write error, for the run */
    int epfd, evfd;
    pthread_t thread;
    int started, stopping;
    int open_pipes;
    os_pipe *open;       /* every open pipe, current or an older execution's */
    os_pipe *graveyard;  /* closed pipes the pump may still hold an event for */
    /* secrets: forms longest first */
    int nforms;
    unsigned char **forms;
    size_t *form_len;
    size_t longest;
    unsigned char first[256]; /* 1: some form starts with this byte */
    unsigned char buf[OS_READ];
    unsigned char *mbuf;      /* masked output of one read */
    size_t mbuf_cap;
} os_store;

static const unsigned char OS_MASK[] = "*******";
#define OS_MASK_LEN 7

static inline os_slot *os_slot_at(os_store *s, uint32_t token) {
    return (os_slot *)(s->map + (size_t)token * OS_SLOT);
}

static inline uint16_t os_check(uint32_t token, uint32_t exec, uint32_t len, int stream) {
    uint32_t x = token * 2654435761u ^ exec * 40503u ^ len * 2246822519u ^ (uint32_t)stream;
    return (uint16_t)(x ^ (x >> 16));
}

/* Make the index `n` slots long (n > nslots); -1 (errno) when it cannot grow. */
static int os_resize_locked(os_store *s, size_t n) {
    if (ftruncate(s->idx_fd, (off_t)(n * OS_SLOT)) < 0) return -1;
    void *m = mmap(NULL, n * OS_SLOT, PROT_READ | PROT_WRITE, MAP_SHARED, s->idx_fd, 0);
    if (m == MAP_FAILED) return -1;
    os_pipe **cur = realloc(s->cur, n * 2 * sizeof(os_pipe *));
    if (cur) s->cur = cur;
    int *lost = realloc(s->lost, n * sizeof(int));
    if (lost) s->lost = lost;
    int *tee = realloc(s->tee, n * 2 * sizeof(int));
    if (tee) s->tee = tee;
    if (!cur || !lost || !tee) {
        munmap(m, n * OS_SLOT);
        errno = ENOMEM;
        return -1;
    }
    memset(s->cur + s->nslots * 2, 0, (n - s->nslots) * 2 * sizeof(os_pipe *));
    memset(s->lost + s->nslots, 0, (n - s->nslots) * sizeof(int));
    memset(s->tee + s->nslots * 2, 0xff, (n - s->nslots) * 2 * sizeof(int));
    if (s->map) munmap(s->map, s->nslots * OS_SLOT);
    s->map = m;
    s->nslots = n;
    return 0;
}

/* Make room in the index for `token` (doubling: a run's tokens are known up front, so
   this is for what comes after, such as fan-out items). */
static int os_grow_locked(os_store *s, uint32_t token) {
    if ((size_t)token < s->nslots) return 0;
    size_t n = s->nslots ? s->nslots : 64;
    while (n <= (size_t)token) n *= 2;
    return os_resize_locked(s, n);
}

/* Append one record of `token`'s `stream`; 0, or the errno of a failed write (the
   record is then not counted: the next one overwrites what was written of it). */
static int os_append_locked(os_store *s, uint32_t token, uint32_t exec, int stream,
                            const unsigned char *data, size_t len) {
    if (len == 0) return 0;
    if (os_grow_locked(s, token) < 0) return errno ? errno : ENOMEM;
    os_slot *slot = os_slot_at(s, token);
    while (len > 0) {
        uint32_t n = len > 0x7fffffffu ? 0x7fffffffu : (uint32_t)len;
        unsigned char h[OS_HEADER];
        uint16_t check = os_check(token, exec, n, stream);
        uint64_t prev = slot->head[stream];
        h[0] = OS_MAGIC;
        h[1] = (unsigned char)stream;
        memcpy(h + 2, &check, 2);
        memcpy(h + 4, &token, 4);
        memcpy(h + 8, &exec, 4);
        memcpy(h + 12, &n, 4);
        memcpy(h + 16, &prev, 8);
        size_t want = OS_HEADER + (size_t)n, done = 0;
        while (done < want) {
            ssize_t w;
            if (done < OS_HEADER) {
                struct iovec v[2] = {{h + done, OS_HEADER - done}, {(void *)data, n}};
                w = pwritev(s->data_fd, v, 2, (off_t)(s->end + done));
            } else {
                w = pwrite(s->data_fd, data + (done - OS_HEADER), want - done,
                           (off_t)(s->end + done));
            }
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                int e = w < 0 ? errno : ENOSPC;
                if (!s->first_err) s->first_err = e;
                s->lost[token] = e;
                return e;
            }
            done += (size_t)w;
        }
        slot->head[stream] = s->end + 1;
        slot->total[stream] += n;
        s->end += want;
        data += n;
        len -= n;
    }
    return 0;
}

/* Mask the secrets in carry + data; what may be written now goes to s->mbuf (its
   length returned), the undecided tail back to the carry. `final`: nothing more comes. */
static size_t os_mask(os_store *s, os_pipe *pp, const unsigned char *data, size_t len, int final) {
    size_t total = pp->carry_len + len;
    unsigned char *in = (unsigned char *)data;
    unsigned char *joined = NULL;
    if (pp->carry_len) {
        joined = malloc(total ? total : 1);
        if (!joined) return 0;
        memcpy(joined, pp->carry, pp->carry_len);
        memcpy(joined + pp->carry_len, data, len);
        in = joined;
    }
    size_t cap = total + total / 2 + OS_MASK_LEN + 16; /* masks may be longer than values */
    if (s->mbuf_cap < cap) {
        unsigned char *m = realloc(s->mbuf, cap);
        if (!m) {
            free(joined);
            return 0;
        }
        s->mbuf = m;
        s->mbuf_cap = cap;
    }
    /* A match that starts before `cut` is final: the longest form that starts there ends
       inside the buffer or not at all. Later positions wait for more bytes. */
    size_t cut = final ? total : (total >= s->longest - 1 ? total - (s->longest - 1) : 0);
    size_t i = 0, o = 0;
    while (i < cut) {
        int hit = -1;
        if (s->first[in[i]]) {
            for (int f = 0; f < s->nforms; f++) {
                size_t fl = s->form_len[f];
                if (fl <= total - i && memcmp(in + i, s->forms[f], fl) == 0) {
                    hit = f;
                    break;
                }
            }
        }
        if (hit >= 0) {
            if (o + OS_MASK_LEN > s->mbuf_cap) break; /* cannot happen: room was made */
            memcpy(s->mbuf + o, OS_MASK, OS_MASK_LEN);
            o += OS_MASK_LEN;
            i += s->form_len[hit];
        } else {
            s->mbuf[o++] = in[i++];
        }
        if (o + OS_MASK_LEN >= s->mbuf_cap) { /* grow for the rest */
            size_t ncap = s->mbuf_cap * 2;
            unsigned char *m = realloc(s->mbuf, ncap);
            if (!m) break;
            s->mbuf = m;
            s->mbuf_cap = ncap;
        }
    }
    /* The rest (past a match that ended beyond `cut`, or the undecided tail) is kept. */
    size_t rest = total - i;
    unsigned char *nc = rest ? malloc(rest) : NULL;
    if (rest && nc) memcpy(nc, in + i, rest);
    free(pp->carry);
    pp->carry = nc;
    pp->carry_len = nc ? rest : 0;
    free(joined);
    return o;
}

/* Store what was read from a pipe (masked, when there are secrets). */
static void os_take_locked(os_store *s, os_pipe *pp, const unsigned char *data, size_t len,
                           int final) {
    if (s->nforms) {
        len = os_mask(s, pp, data, len, final);
        data = s->mbuf;
    }
    os_append_locked(s, pp->token, pp->exec, pp->stream, data, len);
    while (pp->tee_fd >= 0 && len > 0) {
        ssize_t w = write(pp->tee_fd, data, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            s->lost[pp->token] = w < 0 ? errno : ENOSPC;
            break;
        }
        data += w;
        len -= (size_t)w;
    }
}

/* Close a pipe. It is freed only by the pump, after the round in which it may still
   hold an event for it (the engine's thread drains too). */
static void os_close_pipe_locked(os_store *s, os_pipe *pp) {
    if (s->nforms && pp->carry_len) os_take_locked(s, pp, NULL, 0, 1);
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, pp->fd, NULL);
    close(pp->fd);
    pp->fd = -1;
    if (pp->tee_fd >= 0) close(pp->tee_fd);
    pp->tee_fd = -1;
    size_t k = (size_t)pp->token * 2 + (size_t)pp->stream;
    if ((size_t)pp->token < s->nslots && s->cur[k] == pp) s->cur[k] = NULL;
    if (pp->prev) pp->prev->next = pp->next;
    else s->open = pp->next;
    if (pp->next) pp->next->prev = pp->prev;
    pp->prev = NULL;
    pp->next = s->graveyard;
    s->graveyard = pp;
    s->open_pipes--;
}

static void os_bury_locked(os_store *s) {
    while (s->graveyard) {
        os_pipe *pp = s->graveyard;
        s->graveyard = pp->next;
        free(pp->carry);
        free(pp);
    }
}

/* Read a pipe until it is empty (EAGAIN), closed (then it is closed here too) or
   `max` bytes were read; 1 when the pipe was closed. */
static int os_read_locked(os_store *s, os_pipe *pp, size_t max) {
    size_t got = 0;
    for (;;) {
        ssize_t r = read(pp->fd, s->buf, OS_READ);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (r <= 0) {
            os_close_pipe_locked(s, pp);
            return 1;
        }
        os_take_locked(s, pp, s->buf, (size_t)r, 0);
        got += (size_t)r;
        if (got >= max) return 0;
    }
}

static void *os_pump(void *arg) {
    os_store *s = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    struct epoll_event ev[64];
    for (;;) {
        int n = epoll_wait(s->epfd, ev, 64, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            return NULL;
        }
        pthread_mutex_lock(&s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        for (int k = 0; k < n; k++) {
            if (ev[k].data.u64 == OS_WAKE) continue;
            os_pipe *pp = ev[k].data.ptr;
            /* One read's worth per pipe and round: a chatty step cannot starve others. */
            if (pp->fd >= 0) os_read_locked(s, pp, 1);
        }
        os_bury_locked(s);
        pthread_mutex_unlock(&s->mu);
    }
}

/* A store writing to `data_fd` (appending at `end`) and indexing into `idx_fd` (both
   its own once made: os_free closes them), with these secret forms (longest first);
   NULL and errno when it cannot be made (the descriptors are then still the caller's). */
static os_store *os_new(int data_fd, uint64_t end, int idx_fd, size_t nslots, int nforms,
                        unsigned char **forms, size_t *form_len) {
    os_store *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->mu, NULL);
    s->data_fd = data_fd;
    s->idx_fd = idx_fd;
    s->end = end;
    s->epfd = s->evfd = -1;
    struct stat st;
    if (fstat(idx_fd, &st) < 0) goto fail;
    size_t have = (size_t)st.st_size / OS_SLOT;
    if (have > nslots) nslots = have;
    if (nslots && os_resize_locked(s, nslots) < 0) goto fail;
    s->nforms = nforms;
    s->forms = forms;
    s->form_len = form_len;
    for (int f = 0; f < nforms; f++) {
        s->first[forms[f][0]] = 1;
        if (form_len[f] > s->longest) s->longest = form_len[f];
    }
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) goto fail;
    s->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->evfd < 0) goto fail;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = OS_WAKE};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->evfd, &ev) < 0) goto fail;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&s->thread, &attr, os_pump, s);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        errno = rc;
        goto fail;
    }
    s->started = 1;
    return s;
fail:;
    int saved = errno;
    if (s->epfd >= 0) close(s->epfd);
    if (s->evfd >= 0) close(s->evfd);
    if (s->map) munmap(s->map, s->nslots * OS_SLOT);
    free(s->cur);
    free(s->lost);
    free(s->tee);
    free(s);
    errno = saved;
    return NULL;
}

/* Mask these forms (longest first) from now on (the caller keeps them alive). */
static void os_set_forms(os_store *s, int nforms, unsigned char **forms, size_t *form_len) {
    pthread_mutex_lock(&s->mu);
    s->nforms = nforms;
    s->forms = forms;
    s->form_len = form_len;
    s->longest = 0;
    memset(s->first, 0, sizeof s->first);
    for (int f = 0; f < nforms; f++) {
        s->first[forms[f][0]] = 1;
        if (form_len[f] > s->longest) s->longest = form_len[f];
    }
    pthread_mutex_unlock(&s->mu);
}

/* The next execution of `token` begins: its number (records carry it from now on); 0
   and errno when the index cannot grow. */
static uint32_t os_begin(os_store *s, uint32_t token) {
    pthread_mutex_lock(&s->mu);
    uint32_t exec = 0;
    if (os_grow_locked(s, token) == 0) {
        exec = ++os_slot_at(s, token)->exec;
        s->lost[token] = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return exec;
}

/* Watch `fd` (a pipe's read end, which the store now owns) as `token`'s `stream`; -1
   (errno) when it cannot be watched (the fd is then closed). */
static int os_watch(os_store *s, uint32_t token, int stream, int fd) {
    os_pipe *pp = calloc(1, sizeof *pp);
    /* A fresh pipe's read end has no status flag but O_RDONLY, which F_SETFL keeps. */
    if (!pp || fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        int e = pp ? errno : ENOMEM;
        free(pp);
        close(fd);
        errno = e;
        return -1;
    }
    pp->fd = fd;
    pp->token = token;
    pp->stream = stream;
    pp->tee_fd = -1;
    pthread_mutex_lock(&s->mu);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = pp};
    if (os_grow_locked(s, token) < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = errno;
        pthread_mutex_unlock(&s->mu);
        free(pp);
        close(fd);
        errno = e;
        return -1;
    }
    pp->exec = os_slot_at(s, token)->exec;
    /* An older execution's pipe (a background child of it) stays watched on its own. */
    s->cur[(size_t)token * 2 + (size_t)stream] = pp;
    pp->tee_fd = s->tee[(size_t)token * 2 + (size_t)stream]; /* the pipe owns it now */
    s->tee[(size_t)token * 2 + (size_t)stream] = -1;
    pp->next = s->open;
    if (s->open) s->open->prev = pp;
    s->open = pp;
    s->open_pipes++;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* The next pipes of `token` also copy what they carry into these files (-1: none);
   the store owns the descriptors from now on. -1 (errno) when the index cannot grow. */
static int os_tee(os_store *s, uint32_t token, int out_fd, int err_fd) {
    pthread_mutex_lock(&s->mu);
    int rc = os_grow_locked(s, token);
    if (rc == 0) {
        int fds[2] = {out_fd, err_fd};
        for (size_t k = 0; k < 2; k++) {
            int *slot = &s->tee[(size_t)token * 2 + k];
            if (*slot >= 0) close(*slot);
            *slot = fds[k];
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* A pipe of `token` could not be watched: its writes are lost, and it is said. */
static void os_note_lost(os_store *s, uint32_t token, int err) {
    pthread_mutex_lock(&s->mu);
    if (os_grow_locked(s, token) == 0) s->lost[token] = err;
    pthread_mutex_unlock(&s->mu);
}

/* `token`'s process has exited: store what it wrote (the pipes' contents now); the
   errno of a write that failed for it since its execution began (0: none). */
static int os_drain(os_store *s, uint32_t token) {
    pthread_mutex_lock(&s->mu);
    int lost = 0;
    if ((size_t)token < s->nslots) {
        for (int k = 0; k < 2; k++) {
            os_pipe *pp = s->cur[(size_t)token * 2 + (size_t)k];
            if (pp && !os_read_locked(s, pp, OS_DRAIN_MAX) && s->nforms && pp->carry_len) {
                /* The process is gone: what it held back is final for this drain. */
                os_take_locked(s, pp, NULL, 0, 1);
            }
        }
        lost = s->lost[token];
    }
    pthread_mutex_unlock(&s->mu);
    return lost;
}

/* Append bytes the engine itself has for `token` (a sub-DAG's gathered output, a
   Dask worker's logs, a note); 0 or the errno of the failed write. */
static int os_put(os_store *s, uint32_t token, int stream, const unsigned char *data,
                  size_t len) {
    pthread_mutex_lock(&s->mu);
    int rc = os_grow_locked(s, token) < 0 ? (errno ? errno : ENOMEM) : 0;
    if (rc == 0) rc = os_append_locked(s, token, os_slot_at(s, token)->exec, stream, data, len);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Stop the pump: what is in the pipes now is stored, the pipes are closed. */
static void os_close(os_store *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    uint64_t one = 1;
    ssize_t r = write(s->evfd, &one, sizeof one);
    (void)r;
    pthread_mutex_unlock(&s->mu);
    if (s->started) pthread_join(s->thread, NULL);
    s->started = 0;
    pthread_mutex_lock(&s->mu);
    while (s->open) {
        os_pipe *pp = s->open;
        if (!os_read_locked(s, pp, OS_DRAIN_MAX)) os_close_pipe_locked(s, pp);
    }
    os_bury_locked(s);
    pthread_mutex_unlock(&s->mu);
}

/* Free a closed store (os_close first), closing its two files. */
static void os_free(os_store *s) {
    for (size_t k = 0; k < s->nslots * 2; k++)
        if (s->tee[k] >= 0) close(s->tee[k]);
    free(s->tee);
    close(s->data_fd);
    close(s->idx_fd);
    close(s->epfd);
    close(s->evfd);
    if (s->map) munmap(s->map, s->nslots * OS_SLOT);
    free(s->cur);
    free(s->lost);
    free(s->mbuf);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

#endif
