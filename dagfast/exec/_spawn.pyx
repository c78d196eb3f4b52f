"""Starts step processes and reaps them through pidfds.

The event loop's thread calls `Pool.submit` (it copies the job into one C block and
starts it) and `Pool.reap` when the epoll set is readable (it returns what ended and
what could not start). Where the system allows, a start is a clone(CLONE_VM) on the
calling thread that does not wait for the child's exec (`vmclone.h`); elsewhere the
pool's threads, written in C in `spawnpool.h` and never holding the GIL, run glibc's
vfork-based `posix_spawn`, so two to four children can be between vfork and exec at
once while the loop goes on. Tokens are small integers (the engine's step ids); only
integers and byte strings cross this boundary.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcpy


cdef extern from "Python.h":
    bytes PyUnicode_EncodeFSDefault(object s)

cdef extern from "<sys/epoll.h>" nogil:
    union epoll_data_t "epoll_data":
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)

cdef extern from "<signal.h>" nogil:
    ctypedef struct siginfo_t:
        int si_code
        int si_status
    enum:
        CLD_EXITED
        CLD_KILLED
        CLD_DUMPED

cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EINTR

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from "<sys/resource.h>" nogil:
    struct timeval:
        long tv_sec
        long tv_usec
    struct rusage:
        timeval ru_utime
        timeval ru_stime
        long ru_maxrss
    int wait4(int pid, int *status, int options, rusage *ru)

cdef extern from "outstore.h" nogil:
    ctypedef struct os_store:
        pass
    os_store *os_new(int data_fd, uint64_t end, int idx_fd, size_t nslots, int nforms,
                     unsigned char **forms, size_t *form_len)
    uint32_t os_begin(os_store *s, uint32_t token)
    int os_drain(os_store *s, uint32_t token)
    int os_put(os_store *s, uint32_t token, int stream, const unsigned char *data, size_t len)
    void os_close(os_store *s)
    void os_free(os_store *s)
    void os_set_forms(os_store *s, int nforms, unsigned char **forms, size_t *form_len)
    int os_tee(os_store *s, uint32_t token, int out_fd, int err_fd)

cdef extern from "vmclone.h" nogil:
    ctypedef struct vc_args:
        int err

cdef extern from "spawnpool.h" nogil:
    ctypedef struct sp_job:
        sp_job *next
        int token
        int err
        int watch_err
        int cancel_sig
        int out_fd
        int err_fd
        char *path
        char *cwd
        char **argv
        char **envp
        vc_args vc
    ctypedef struct sp_pool:
        int vmclone
    uint64_t SP_WAKE_MARK
    int P_PIDFD
    int WEXITED
    int waitid(int idtype, int id, siginfo_t *info, int options)
    int sp_pid(sp_pool *p, int token)
    long sp_own_hwm_kib()
    sp_pool *sp_new(int nthreads, int epfd, int vmclone)
    void sp_set_store(sp_pool *p, os_store *s)
    int sp_submit(sp_pool *p, sp_job *job, int inline_)
    sp_job *sp_take_child(sp_pool *p, int token)
    void sp_release_child(sp_job *job)
    void sp_settle(sp_pool *p)
    sp_job *sp_take_failed(sp_pool *p)
    void sp_ended(sp_pool *p, int token)
    int sp_signal(sp_pool *p, int token, int sig)
    void sp_signal_running(sp_pool *p, int sig)
    int sp_signal_groups(sp_pool *p, int sig)
    int sp_groups(sp_pool *p, int *out, int max)
    void sp_free(sp_pool *p)


cdef extern from "guardian.h" nogil:
    int gd_start(const char *id, int *wfd)


cdef enum:
    MAX_EVENTS = 256


cdef inline Py_ssize_t _put(char *buf, Py_ssize_t at, bytes s) except -1:
    """Copy `s` and a NUL into buf[at:]; the new offset. A NUL inside `s` is an error."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(s)
    cdef const char *src = PyBytes_AS_STRING(s)
    if memchr(src, 0, n) != NULL:
        raise ValueError(f"embedded NUL byte in {s[:40]!r}")
    memcpy(buf + at, src, n)
    buf[at + n] = 0
    return at + n + 1


cdef inline Py_ssize_t _put_pair(char *buf, Py_ssize_t at, bytes k, bytes v) except -1:
    """Copy `k=v` and a NUL into buf[at:] (an environment entry, made without a bytes
    object of its own); the new offset."""
    at = _put(buf, at, k)
    buf[at - 1] = 61  # '='
    return _put(buf, at, v)


cdef inline bytes _fs(s):
    return s if type(s) is bytes else PyUnicode_EncodeFSDefault(s)


cdef class Store:
    """A run's output store (outstore.h): the data file `data_fd` (appended to at
    `end`), its index `idx_fd` (at least `nslots` slots), and a pump thread that stores
    what the steps' pipes carry, with every one of `forms` (secrets, longest first)
    masked. The store owns the descriptors once made (`close` closes them)."""

    cdef os_store *_s
    cdef unsigned char **_forms
    cdef size_t *_lens
    cdef list _keep

    def __cinit__(self, int data_fd, uint64_t end, int idx_fd, size_t nslots, forms=()):
        cdef int n = self._set(forms)
        self._s = os_new(data_fd, end, idx_fd, nslots, n, self._forms, self._lens)
        if self._s == NULL:
            raise OSError(errno, "cannot open the run's output store")

    cdef int _set(self, forms) except -1:
        """Hold `forms` (longest first) as C arrays; the old arrays are freed."""
        cdef list keep = [bytes(f) for f in forms if f]
        cdef int n = len(keep), k
        cdef unsigned char **arr = <unsigned char **>malloc((n + 1) * sizeof(unsigned char *))
        cdef size_t *lens = <size_t *>malloc((n + 1) * sizeof(size_t))
        if arr == NULL or lens == NULL:
            free(arr)
            free(lens)
            raise MemoryError()
        for k in range(n):
            arr[k] = <unsigned char *>PyBytes_AS_STRING(keep[k])
            lens[k] = PyBytes_GET_SIZE(keep[k])
        if self._s != NULL:
            os_set_forms(self._s, n, arr, lens)  # under its lock: the old ones are free
        free(self._forms)
        free(self._lens)
        self._forms, self._lens, self._keep = arr, lens, keep
        return n

    def mask(self, forms):
        """Mask these secret forms (longest first) in what is stored from now on."""
        if self._s == NULL:
            raise ValueError("the output store is closed")
        self._set(forms)

    def __dealloc__(self):
        self._release()
        free(self._forms)
        free(self._lens)

    cdef void _release(self):
        if self._s != NULL:
            with nogil:
                os_close(self._s)
            os_free(self._s)
            self._s = NULL

    def close(self):
        """Store what the pipes hold now, close them, stop the pump."""
        self._release()

    def begin(self, uint32_t token):
        """The next execution of step `token` begins: its number (1 for the first, also
        across attempts of the run: the index keeps it)."""
        if self._s == NULL:
            raise ValueError("the output store is closed")
        cdef uint32_t e = os_begin(self._s, token)
        if e == 0:
            raise OSError(errno, "cannot grow the output index")
        return e

    def tee(self, uint32_t token, int out_fd, int err_fd):
        """Step `token`'s next process's stdout and stderr are also copied (masked, as
        stored) into these files, which the store owns from now on (-1: none)."""
        if self._s == NULL or os_tee(self._s, token, out_fd, err_fd) != 0:
            if out_fd >= 0:
                close(out_fd)
            if err_fd >= 0:
                close(err_fd)
            raise OSError(errno or 9, "cannot copy the step's output to its files")

    def drain(self, uint32_t token):
        """Store what step `token`'s pipes hold now (its process has exited); the errno
        of a write of its output that failed (0: none)."""
        if self._s == NULL:
            return 0
        cdef int rc
        with nogil:
            rc = os_drain(self._s, token)
        return rc

    def put(self, uint32_t token, int stream, bytes data):
        """Append `data` to step `token`'s stdout (stream 0) or stderr (1), under its
        current execution; 0 or the errno of the failed write."""
        if self._s == NULL:
            raise ValueError("the output store is closed")
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
        cdef size_t n = PyBytes_GET_SIZE(data)
        cdef int rc
        with nogil:
            rc = os_put(self._s, token, stream, p, n)
        return rc


cdef class Pool:
    """Starts jobs and registers each child's pidfd in `epfd`; their stdout and stderr
    go into `store` through pipes. With `vmclone` (and a system that allows it: see
    vmclone.h) a job starts on the submitting thread without waiting for its exec;
    otherwise `nthreads` threads run posix_spawn, which waits."""

    cdef sp_pool *_p
    cdef int _epfd
    cdef Store _store
    cdef dict _cost  # token -> (CPU seconds, peak RSS in KiB) of its last process
    cdef long _floor  # the engine's own peak RSS as last read (it only grows)

    def __cinit__(self, int nthreads, int epfd, Store store=None, bint vmclone=True):
        self._epfd = epfd
        self._cost = {}
        self._floor = -1
        self._p = sp_new(nthreads, epfd, vmclone)
        if self._p == NULL:
            raise OSError(errno, "cannot start the spawn threads")
        if store is not None:
            self._store = store
            sp_set_store(self._p, store._s)

    def __dealloc__(self):
        if self._p != NULL:
            sp_free(self._p)
            self._p = NULL

    @property
    def waits(self):
        """Whether a start waits for the child's exec (posix_spawn on the threads)
        rather than returning as soon as the child exists (vmclone.h)."""
        return self._p == NULL or not self._p.vmclone

    def use_store(self, Store store):
        """Piped jobs' output goes into `store` from now on (before any such job)."""
        self._store = store
        sp_set_store(self._p, store._s)

    def close(self):
        """Stop the threads; jobs not yet started are dropped."""
        if self._p != NULL:
            sp_free(self._p)
            self._p = NULL

    def submit(self, int token, path, argv, dict env, cwd, bint inline=False):
        """Queue the start of `argv` (run as `path`) with environment `env` (bytes ->
        bytes) in `cwd`, stdin from /dev/null, stdout and stderr two pipes into the
        output store (`use_store` first). `inline`: start it on this thread now (with
        the GIL released) even if that waits for its exec, rather than on a pool
        thread (it always starts here when it does not wait). ValueError: a NUL byte
        inside a string, or no store."""
        if self._store is None or self._store._s == NULL:
            raise ValueError("no output store to pipe the step's output into")
        if self._p == NULL:
            raise ValueError("the pool is closed")
        if token < 0:
            raise ValueError("negative token")
        cdef list args = [_fs(a) for a in argv]
        cdef bytes bpath = _fs(path), bcwd = _fs(cwd)
        cdef Py_ssize_t argc = len(args), envc = len(env), size, at, i
        size = sizeof(sp_job) + (argc + 1 + envc + 1) * sizeof(char *)
        size += len(bpath) + len(bcwd) + 2
        for a in args:
            size += PyBytes_GET_SIZE(a) + 1
        # `name=value` entries are copied straight from the dict's bytes (no Python
        # object per entry: a step's environment has dozens).
        for k, v in env.items():
            if type(k) is not bytes or type(v) is not bytes:
                raise TypeError("environment names and values must be bytes")
            size += PyBytes_GET_SIZE(k) + PyBytes_GET_SIZE(v) + 2
        cdef char *block = <char *>malloc(size)
        if block == NULL:
            raise MemoryError()
        cdef sp_job *job = <sp_job *>block
        cdef char **ptrs = <char **>(block + sizeof(sp_job))
        cdef char *strs = <char *>(ptrs + argc + 1 + envc + 1)
        try:
            job.token = token
            job.err = 0
            job.watch_err = 0
            job.cancel_sig = 0
            job.out_fd = -1  # the pipes are made by whoever starts it
            job.err_fd = -1
            job.argv = ptrs
            job.envp = ptrs + argc + 1
            at = 0
            job.path = strs + at
            at = _put(strs, at, bpath)
            job.cwd = strs + at
            at = _put(strs, at, bcwd)
            for i in range(argc):
                ptrs[i] = strs + at
                at = _put(strs, at, <bytes>args[i])
            ptrs[argc] = NULL
            i = argc + 1
            for k, v in env.items():
                ptrs[i] = strs + at
                at = _put_pair(strs, at, <bytes>k, <bytes>v)
                i += 1
            ptrs[argc + 1 + envc] = NULL
        except BaseException:
            free(block)
            raise
        cdef int rc, flag = inline
        with nogil:
            rc = sp_submit(self._p, job, flag)
        if rc < 0:
            free(block)
            raise MemoryError()
        # From here the pool owns the job.

    def reap(self):
        """What happened since the last call, without waiting: a list of
        (token, wait status) for processes that ended, (token, (wait status, errno))
        for those whose output could not all be stored (the errno of the write), and
        (token, (errno, started, path, cwd)) for jobs that failed (`started`: it ran
        but could not be watched, and was killed). A step's output up to its exit is in
        the store before its end is returned."""
        cdef epoll_event events[MAX_EVENTS]
        cdef siginfo_t info
        cdef int n, k, fd, token, status = 0, rc, lost, pid
        cdef rusage ru
        cdef os_store *store = self._store._s if self._store is not None else NULL
        cdef uint64_t data
        cdef sp_job *job
        cdef sp_job *nxt
        cdef list out = []
        if self._p == NULL:
            return out
        while True:
            n = epoll_wait(self._epfd, events, MAX_EVENTS, 0)
            if n < 0 and errno == EINTR:
                continue
            break
        for k in range(n):
            data = events[k].data.u64
            if data == SP_WAKE_MARK:
                job = sp_take_failed(self._p)
                while job != NULL:
                    nxt = job.next
                    if job.cancel_sig > 0:
                        # Stopped or timed out before it started: as if killed by that
                        # signal the moment it began (it never ran).
                        out.append((job.token, job.cancel_sig & 0x7F))
                    else:
                        out.append((job.token, (job.err, bool(job.watch_err), job.path,
                                                job.cwd)))
                    free(job)
                    job = nxt
                continue
            token = <int>(data >> 32)
            fd = <int>(data & 0xFFFFFFFF)
            pid = sp_pid(self._p, token)
            if pid > 0:
                # wait4 on the pid (a zombie until reaped, so never reused under us):
                # the wait status and what the process tree it waited for cost.
                with nogil:
                    while True:
                        rc = wait4(pid, &status, 0, &ru)
                        if rc < 0 and errno == EINTR:
                            continue
                        break
                if rc > 0:
                    # Until exec the child runs in the engine's memory (clone(CLONE_VM),
                    # or glibc's vfork-based posix_spawn), and the kernel counts that
                    # memory's peak in the child's. A peak no larger than the engine's
                    # own is that, not the step's.
                    # Read again only when a peak exceeds the last reading: the engine
                    # may have grown since (a /proc read a step spared in a chain).
                    if ru.ru_maxrss > self._floor:
                        self._floor = sp_own_hwm_kib()
                    self._cost[token] = (
                        ru.ru_utime.tv_sec + ru.ru_stime.tv_sec
                        + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
                        ru.ru_maxrss if ru.ru_maxrss > self._floor else None,
                    )
            else:
                info.si_code = 0
                info.si_status = 0
                with nogil:
                    while True:
                        rc = waitid(P_PIDFD, fd, &info, WEXITED)
                        if rc < 0 and errno == EINTR:
                            continue
                        break
                if rc == 0:
                    if info.si_code == CLD_EXITED:
                        status = (info.si_status & 0xFF) << 8
                    elif info.si_code == CLD_DUMPED:
                        status = (info.si_status & 0x7F) | 0x80
                    else:
                        status = info.si_status & 0x7F
            close(fd)  # its one-shot entry is spent, and goes with the file
            sp_ended(self._p, token)
            if rc < 0:
                status = 127 << 8  # reaped by someone else: report a failure, not success
            lost = 0
            if store != NULL:
                with nogil:
                    lost = os_drain(store, token)
            job = sp_take_child(self._p, token)
            if job != NULL:
                # Started without waiting for exec, and it failed before: as a start
                # that failed (it never ran the program).
                out.append((token, (job.vc.err, False, job.path, job.cwd)))
                sp_release_child(job)
                self._cost.pop(token, None)
            elif lost:
                out.append((token, (status, lost)))
            else:
                out.append((token, status))
        sp_settle(self._p)
        return out

    def cost(self, int token):
        """(CPU seconds, user + system, and peak RSS in KiB) of the last process of
        `token` that was reaped, counting the children it waited for; None if none."""
        return self._cost.pop(token, None)

    def signal(self, int token, int sig):
        """Signal the step's process group (right after its start if still pending);
        False when the token has no process."""
        if self._p == NULL:
            return False
        return sp_signal(self._p, token, sig) != 0

    def signal_running(self, int sig):
        """Signal every running step's group (pending ones right after their start)."""
        if self._p != NULL:
            sp_signal_running(self._p, sig)

    def groups(self):
        """The ids of every process group started (and not yet found gone)."""
        if self._p == NULL:
            return []
        cdef int n = sp_groups(self._p, NULL, 0)
        cdef int *buf = <int *>malloc((n + 1) * sizeof(int))
        if buf == NULL:
            raise MemoryError()
        n = sp_groups(self._p, buf, n)
        try:
            return [buf[i] for i in range(n)]
        finally:
            free(buf)

    def signal_groups(self, int sig):
        """Signal every process group ever started (0 only counts); how many remain."""
        if self._p == NULL:
            return 0
        return sp_signal_groups(self._p, sig)


def guard(bytes run_id):
    """Fork the guardian of run `run_id` (see guardian.h): (its pid, the write end of its
    pipe). OSError when it cannot start; ValueError for an empty, too long or NUL id."""
    if not run_id or len(run_id) >= 256 or b"\0" in run_id:
        raise ValueError(f"a run id the guardian cannot hold: {run_id[:40]!r}")
    cdef int wfd = -1
    cdef int pid = gd_start(run_id, &wfd)
    if pid < 0:
        raise OSError(errno, "cannot start the guardian")
    return pid, wfd
