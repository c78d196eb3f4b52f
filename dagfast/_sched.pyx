"""The ready queue of a run: which steps may start, given which have finished.

Integers in, integers out: steps are ids 0..n-1 in file order and the dependencies
arrive in CSR form. The scheduler decides *what* is ready; the caller decides *how
many* run. Queries never change state; events (`pop`, `finish`) return what they
changed. `dagfast._sched_ref` is the readable twin of this module: same API, same
results, run by the same tests.

Outcomes, as `finish(step, outcome)` applies them:
  PASS   each dependent's counter drops; at zero a WAITING dependent becomes READY.
  ABORT  every transitive dependent not yet DONE/CANCELLED becomes CANCELLED. The
         cascade stops at DONE steps: they have already told their dependents.
  SKIP   like ABORT, except that a cancelled dependent flagged PASS_SKIPPED acts as
         PASS for its own dependents; a flagged step finished with SKIP is a PASS.

`pop` hands out the lowest READY ids first. They live in a bitset with summary levels
(64 ids per word), not in a heap: the lowest id is one count-trailing-zeros per level
away and a step that leaves READY before being popped is removed on the spot, which
made `pop` three times faster than a binary heap on the 1,000,000-step benchmark.
"""

from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport Py_INCREF, PyObject
from libc.limits cimport INT_MAX
from libc.stdint cimport uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcpy, memset

cdef extern from "Python.h":
    # With exc=NULL, out-of-range ints clip instead of raising, so every bad id reaches
    # our own range check and gets the same ValueError as in the twin.
    Py_ssize_t PyNumber_AsSsize_t(object o, PyObject* exc) except? -1

cdef extern from *:
    # A C macro rather than Cython's IF: IF is deprecated (cython/cython#4310) and warns at
    # every build, while a C constant folds away just as completely. setup.py defines
    # DAGFAST_DEBUG for debug builds; a plain `cythonize` gets the release build.
    """
    #ifdef DAGFAST_DEBUG
    #define DAGFAST_DEBUG_BUILD 1
    #else
    #define DAGFAST_DEBUG_BUILD 0
    #endif

    /* Removes an attribute from a ready type, as Cython itself does when it adds
       __reduce__ after PyType_Ready: PyType_Modified invalidates the lookup caches. */
    static int dagfast_drop_attr(PyObject *type, PyObject *name) {
        if (PyDict_DelItem(((PyTypeObject *)type)->tp_dict, name) < 0) return -1;
        PyType_Modified((PyTypeObject *)type);
        return 0;
    }

    /* Index of the lowest set bit of a non-zero word. */
    #if defined(__GNUC__) || defined(__clang__)
    #define dagfast_ctz64(x) ((int)__builtin_ctzll(x))
    #elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_ARM64))
    #include <intrin.h>
    static __inline int dagfast_ctz64(unsigned __int64 x) {
        unsigned long i;
        _BitScanForward64(&i, x);
        return (int)i;
    }
    #else
    static int dagfast_ctz64(uint64_t x) {
        int i = 0;
        while (!(x & 1)) { x >>= 1; i++; }
        return i;
    }
    #endif
    """
    const bint DEBUG_BUILD "DAGFAST_DEBUG_BUILD"
    int _ctz64 "dagfast_ctz64"(uint64_t word) noexcept nogil
    int _drop_attr "dagfast_drop_attr"(object type, object name) except -1

# Fixed numbers: they cross the boundary as plain ints and may be persisted by callers.
cdef enum:
    _PASS = 0
    _ABORT = 1
    _SKIP = 2
    _PASS_SKIPPED = 1
    _WAITING = 0
    _READY = 1
    _RUNNING = 2
    _DONE = 3
    _CANCELLED = 4

PASS = _PASS
ABORT = _ABORT
SKIP = _SKIP
PASS_SKIPPED = _PASS_SKIPPED
WAITING = _WAITING
READY = _READY
RUNNING = _RUNNING
DONE = _DONE
CANCELLED = _CANCELLED
DEBUG = DEBUG_BUILD

_INTS = "a buffer of C ints such as array('i')"
_BYTES = "a buffer of unsigned bytes such as array('B')"


cdef object _c_buffer(object buf, str name, str fmt, str what):
    """A 1-d contiguous memoryview of `buf` with item format `fmt`, or a TypeError."""
    try:
        view = memoryview(buf)
    except TypeError:
        raise TypeError(f"{name} must be {what}, not {type(buf).__name__}") from None
    if view.ndim != 1 or view.format != fmt or not view.c_contiguous:
        raise TypeError(f"{name} must be {what}, not a buffer of format {view.format!r}")
    return view


cdef str _bad_step(object step, int n):
    """The error text for an id that names no step."""
    if n == 0:
        return f"step {step!r} is not a step id (there are no steps)"
    return f"step {step!r} is not a step id (0..{n - 1})"


cdef int _cmp_int(const void* a, const void* b) noexcept nogil:
    cdef int x = (<const int*>a)[0]
    cdef int y = (<const int*>b)[0]
    return (x > y) - (x < y)


cdef class Scheduler:
    """The ready queue and dependency counters of one run over steps 0..n-1.

    Step i waits for dep_idx[dep_ptr[i]:dep_ptr[i+1]]; flags[i] may set PASS_SKIPPED.
    """

    def __cinit__(self, n, dep_ptr, dep_idx, flags=None):
        # Every check happens here, once, so the event workers run without any.
        cdef Py_ssize_t count = PyNumber_AsSsize_t(n, NULL)
        if count < 0:
            raise ValueError(f"n must be >= 0, not {n!r}")
        if count > INT_MAX:
            raise ValueError(f"n = {n!r} is more steps than supported ({INT_MAX})")
        cdef const int[::1] ptr = _c_buffer(dep_ptr, "dep_ptr", "i", _INTS)
        cdef const int[::1] idx = _c_buffer(dep_idx, "dep_idx", "i", _INTS)
        cdef const unsigned char[::1] flag_bytes = None
        if flags is not None:
            flag_bytes = _c_buffer(flags, "flags", "B", _BYTES)
        cdef Py_ssize_t i, e
        cdef int dep
        if ptr.shape[0] != count + 1:
            raise ValueError(f"dep_ptr must hold n + 1 = {count + 1} offsets, not {ptr.shape[0]}")
        if flags is not None and flag_bytes.shape[0] != count:
            raise ValueError(f"flags must hold n = {count} bytes, not {flag_bytes.shape[0]}")
        if ptr[0] != 0:
            raise ValueError(f"dep_ptr[0] must be 0, not {ptr[0]}")
        for i in range(count):
            if ptr[i + 1] < ptr[i]:
                raise ValueError(
                    f"dep_ptr must not decrease, but dep_ptr[{i + 1}] = {ptr[i + 1]}"
                    f" < dep_ptr[{i}] = {ptr[i]}"
                )
        if ptr[count] != idx.shape[0]:
            raise ValueError(
                f"dep_ptr[{count}] = {ptr[count]} must equal len(dep_idx) = {idx.shape[0]}"
            )
        for i in range(count):
            for e in range(ptr[i], ptr[i + 1]):
                dep = idx[e]
                if dep < 0 or dep >= count:
                    raise ValueError(
                        f"step {i} depends on {dep}, which is not a step id (0..{count - 1})"
                    )
                if dep == i:
                    raise ValueError(f"step {i} depends on itself")
        if flags is not None:
            for i in range(count):
                if flag_bytes[i] & ~_PASS_SKIPPED:
                    raise ValueError(
                        f"flags[{i}] = {flag_bytes[i]} sets unknown bits"
                        f" (only PASS_SKIPPED = {_PASS_SKIPPED} is defined)"
                    )

        self._n = <int>count
        # The ready set: a bitset over ids (64 per word), then a summary level with one bit
        # per non-empty word below it, and so on up to a single word; at most 6 levels.
        cdef Py_ssize_t words = max((count + 63) >> 6, 1)
        cdef Py_ssize_t total_words = 0
        while True:
            self._level_start[self._levels] = total_words
            self._levels += 1
            total_words += words
            if words == 1:
                break
            words = (words + 63) >> 6
        self._state = <unsigned char*>PyMem_Malloc(count)
        self._flags = <unsigned char*>PyMem_Malloc(count)
        self._pending = <int*>PyMem_Malloc(count * sizeof(int))
        self._out_ptr = <int*>PyMem_Malloc((count + 1) * sizeof(int))
        # len(dep_idx) bounds the distinct edges, so the dependents always fit.
        self._out_idx = <int*>PyMem_Malloc(idx.shape[0] * sizeof(int))
        self._ready_bits = <uint64_t*>PyMem_Malloc(total_words * sizeof(uint64_t))
        self._scratch = <int*>PyMem_Malloc(count * sizeof(int))
        if (self._state == NULL or self._flags == NULL or self._pending == NULL
                or self._out_ptr == NULL or self._out_idx == NULL or self._ready_bits == NULL
                or self._scratch == NULL):
            raise MemoryError()
        memset(self._ready_bits, 0, total_words * sizeof(uint64_t))
        if flags is None:
            memset(self._flags, 0, count)
        elif count:
            memcpy(self._flags, &flag_bytes[0], count)
        self._build(&ptr[0], &idx[0] if idx.shape[0] else NULL)

    def __dealloc__(self):
        PyMem_Free(self._state)
        PyMem_Free(self._flags)
        PyMem_Free(self._pending)
        PyMem_Free(self._out_ptr)
        PyMem_Free(self._out_idx)
        PyMem_Free(self._ready_bits)
        PyMem_Free(self._scratch)

    cdef void _build(self, const int* dep_ptr, const int* dep_idx) noexcept nogil:
        """Counters and the dependents CSR in O(n + E); steps without deps start READY."""
        cdef int n = self._n
        cdef int i, e, dep
        cdef int* seen = self._scratch  # stamps that drop duplicated deps
        cdef int* out_ptr = self._out_ptr
        memset(self._state, _WAITING, n)
        memset(self._pending, 0, n * sizeof(int))
        memset(out_ptr, 0, (n + 1) * sizeof(int))
        for i in range(n):
            seen[i] = -1
        # First count distinct deps per step, and distinct dependents at out_ptr[dep + 1]...
        for i in range(n):
            for e in range(dep_ptr[i], dep_ptr[i + 1]):
                dep = dep_idx[e]
                if seen[dep] != i:
                    seen[dep] = i
                    self._pending[i] += 1
                    out_ptr[dep + 1] += 1
        for i in range(n):
            out_ptr[i + 1] += out_ptr[i]
        # ...then fill, using out_ptr[dep] as the cursor, so each entry ends up holding the
        # start of the next list and one shift restores it. Stamps -2 - i never equal a
        # first-pass stamp; visiting i in ascending order leaves every list ascending.
        for i in range(n):
            for e in range(dep_ptr[i], dep_ptr[i + 1]):
                dep = dep_idx[e]
                if seen[dep] != -2 - i:
                    seen[dep] = -2 - i
                    self._out_idx[out_ptr[dep]] = i
                    out_ptr[dep] += 1
        for i in range(n, 0, -1):
            out_ptr[i] = out_ptr[i - 1]
        out_ptr[0] = 0
        for i in range(n):
            if self._pending[i] == 0:
                self._state[i] = _READY
                self._ready += 1
                self._ready_add(i)

    cdef void _ready_add(self, int step) noexcept nogil:
        """Puts a step in the ready set, flagging its word in each level above as non-empty."""
        cdef uint64_t* word
        cdef uint64_t before
        cdef Py_ssize_t i = step
        cdef int level
        for level in range(self._levels):
            word = &self._ready_bits[self._level_start[level] + (i >> 6)]
            before = word[0]
            word[0] = before | ((<uint64_t>1) << (i & 63))
            if before:
                break  # the levels above already know this word is non-empty
            i >>= 6
        if DEBUG_BUILD:
            self._dbg_ready_adds += 1

    cdef void _ready_remove(self, int step) noexcept nogil:
        """Takes a step out of the ready set, clearing summary bits of words left empty."""
        cdef uint64_t* word
        cdef Py_ssize_t i = step
        cdef int level
        for level in range(self._levels):
            word = &self._ready_bits[self._level_start[level] + (i >> 6)]
            word[0] &= ~((<uint64_t>1) << (i & 63))
            if word[0]:
                break
            i >>= 6

    cdef int _ready_min(self) noexcept nogil:
        """The lowest id in the ready set, which must not be empty: one ctz per level."""
        cdef Py_ssize_t i = 0
        cdef int level
        for level in range(self._levels - 1, -1, -1):
            i = (i << 6) | _ctz64(self._ready_bits[self._level_start[level] + i])
        return <int>i

    cdef void _pop_into(self, Py_ssize_t k) noexcept nogil:
        """Moves the k lowest READY steps (k <= ready_count) to RUNNING, writing them to scratch."""
        cdef Py_ssize_t got
        cdef int step
        for got in range(k):
            step = self._ready_min()
            self._ready_remove(step)
            self._state[step] = _RUNNING
            self._scratch[got] = step
        self._ready -= k
        self._running += k
        if DEBUG_BUILD:
            self._dbg_ready_pops += k

    cdef void _leave(self, int step) noexcept nogil:
        """Takes a step out of the ready/running counts before it becomes DONE or CANCELLED."""
        cdef unsigned char state = self._state[step]
        if state == _READY:
            self._ready -= 1
            self._ready_remove(step)
            if DEBUG_BUILD:
                self._dbg_ready_removes += 1
        elif state == _RUNNING:
            self._running -= 1

    cdef void _release(self, int step) noexcept nogil:
        """Tells the dependents of `step` that it passed; those left with none pending are READY."""
        cdef int e, dep
        for e in range(self._out_ptr[step], self._out_ptr[step + 1]):
            dep = self._out_idx[e]
            self._pending[dep] -= 1
            if self._pending[dep] == 0 and self._state[dep] == _WAITING:
                self._state[dep] = _READY
                self._ready += 1
                self._ready_add(dep)
        if DEBUG_BUILD:
            self._dbg_released_edges += self._out_ptr[step + 1] - self._out_ptr[step]

    cdef Py_ssize_t _cancel_dependents(self, int step, Py_ssize_t tail) noexcept nogil:
        """Cancels the unfinished dependents of `step`, appending them to the worklist."""
        cdef int e, dep
        for e in range(self._out_ptr[step], self._out_ptr[step + 1]):
            dep = self._out_idx[e]
            if self._state[dep] >= _DONE:
                continue
            self._leave(dep)
            self._state[dep] = _CANCELLED
            self._scratch[tail] = dep
            tail += 1
        if DEBUG_BUILD:
            self._dbg_cancel_edges += self._out_ptr[step + 1] - self._out_ptr[step]
        return tail

    cdef Py_ssize_t _finish(self, int step, int outcome) noexcept nogil:
        """Applies one outcome; returns how many steps it cancelled, ascending in scratch."""
        self._leave(step)
        self._state[step] = _DONE
        self._done += 1
        if outcome == _PASS or (outcome == _SKIP and self._flags[step] & _PASS_SKIPPED):
            self._release(step)
            return 0
        # Breadth-first over an explicit worklist (scratch): chains of 100,000 steps
        # must not recurse. Each step is cancelled once, so n entries suffice.
        cdef bint skip = outcome == _SKIP
        cdef Py_ssize_t head = 0
        cdef Py_ssize_t tail = self._cancel_dependents(step, 0)
        cdef Py_ssize_t i
        cdef int dep
        while head < tail:
            dep = self._scratch[head]
            head += 1
            if skip and self._flags[dep] & _PASS_SKIPPED:
                self._release(dep)
            else:
                tail = self._cancel_dependents(dep, tail)
        self._done += tail
        # Cascades usually run in file order already; sort only when they do not.
        for i in range(1, tail):
            if self._scratch[i] < self._scratch[i - 1]:
                qsort(self._scratch, tail, sizeof(int), _cmp_int)
                break
        return tail

    cdef list _scratch_list(self, Py_ssize_t k):
        """The first k ints of scratch as a new list, built in place."""
        cdef list out = PyList_New(k)
        cdef Py_ssize_t i
        cdef object item
        for i in range(k):
            item = self._scratch[i]
            Py_INCREF(item)  # PyList_SET_ITEM steals a reference
            PyList_SET_ITEM(out, i, item)
        return out

    @property
    def n(self):
        """How many steps there are."""
        return self._n

    @property
    def ready_count(self):
        """How many steps are READY."""
        return self._ready

    @property
    def running_count(self):
        """How many steps are RUNNING."""
        return self._running

    @property
    def done_count(self):
        """How many steps are DONE or CANCELLED."""
        return self._done

    def state(self, step):
        """The state of `step`: WAITING, READY, RUNNING, DONE or CANCELLED."""
        cdef Py_ssize_t s = PyNumber_AsSsize_t(step, NULL)
        if s < 0 or s >= self._n:
            raise ValueError(_bad_step(step, self._n))
        return self._state[s]

    def finished(self):
        """Whether every step is DONE or CANCELLED."""
        return self._done == self._n

    def pop(self, limit):
        """Up to `limit` READY steps (all when negative), lowest id first; they become RUNNING."""
        cdef Py_ssize_t k = PyNumber_AsSsize_t(limit, NULL)
        if k < 0 or k > self._ready:
            k = self._ready
        if k == 0:
            return []
        self._pop_into(k)
        return self._scratch_list(k)

    def finish(self, step, outcome):
        """Marks a WAITING, READY or RUNNING step DONE with PASS, ABORT or SKIP.

        Returns the ids this cancelled, ascending.
        """
        cdef Py_ssize_t s = PyNumber_AsSsize_t(step, NULL)
        if s < 0 or s >= self._n:
            raise ValueError(_bad_step(step, self._n))
        cdef Py_ssize_t o = PyNumber_AsSsize_t(outcome, NULL)
        if o < _PASS or o > _SKIP:
            raise ValueError(f"outcome must be PASS (0), ABORT (1) or SKIP (2), not {outcome!r}")
        if self._state[s] == _DONE:
            raise ValueError(f"step {s} is already done")
        if self._state[s] == _CANCELLED:
            raise ValueError(f"step {s} was cancelled, so it cannot finish")
        cdef Py_ssize_t k = self._finish(<int>s, <int>o)
        if k == 0:
            return []
        return self._scratch_list(k)

    def debug_counters(self):
        """Hot-path counters since construction; exists only in DAGFAST_DEBUG=1 builds."""
        return {
            "ready_adds": self._dbg_ready_adds,
            "ready_pops": self._dbg_ready_pops,
            "ready_removes": self._dbg_ready_removes,
            "released_edges": self._dbg_released_edges,
            "cancel_edges": self._dbg_cancel_edges,
        }

    def __repr__(self):
        return (
            f"<Scheduler n={self._n} ready={self._ready} running={self._running}"
            f" done={self._done}>"
        )


if not DEBUG_BUILD:
    # Release builds carry no debug_counters() at all: hasattr() tells the build apart.
    _drop_attr(Scheduler, "debug_counters")
