# The layout of the compiled scheduler; the algorithm and its contract live in _sched.pyx.
cimport cython
from libc.stdint cimport uint64_t


@cython.final
cdef class Scheduler:
    # Sizes and the three counters the queries report; done counts DONE and CANCELLED.
    cdef int _n
    cdef Py_ssize_t _ready
    cdef Py_ssize_t _running
    cdef Py_ssize_t _done

    # Per step, n entries each: state code, flag bits, dependencies not yet passed.
    cdef unsigned char* _state
    cdef unsigned char* _flags
    cdef int* _pending

    # The dependents (reverse edges) in CSR form, deduplicated and ascending per step.
    cdef int* _out_ptr
    cdef int* _out_idx

    # The READY ids as a bitset with summary levels above it (64 ids per word): the lowest
    # READY id is one count-trailing-zeros per level away, and a step that leaves READY
    # early is simply removed.
    cdef uint64_t* _ready_bits
    cdef Py_ssize_t _level_start[6]
    cdef int _levels

    # n ints of workspace: duplicate stamps while building, pop results, cancel worklist.
    cdef int* _scratch

    # Debug counters: incremented only in DAGFAST_DEBUG builds (a C constant folds them away).
    cdef Py_ssize_t _dbg_ready_adds
    cdef Py_ssize_t _dbg_ready_pops
    cdef Py_ssize_t _dbg_ready_removes
    cdef Py_ssize_t _dbg_released_edges
    cdef Py_ssize_t _dbg_cancel_edges

    cdef void _build(self, const int* dep_ptr, const int* dep_idx) noexcept nogil
    cdef void _ready_add(self, int step) noexcept nogil
    cdef void _ready_remove(self, int step) noexcept nogil
    cdef int _ready_min(self) noexcept nogil
    cdef void _pop_into(self, Py_ssize_t k) noexcept nogil
    cdef void _leave(self, int step) noexcept nogil
    cdef void _release(self, int step) noexcept nogil
    cdef Py_ssize_t _cancel_dependents(self, int step, Py_ssize_t tail) noexcept nogil
    cdef Py_ssize_t _finish(self, int step, int outcome) noexcept nogil
    cdef list _scratch_list(self, Py_ssize_t k)
