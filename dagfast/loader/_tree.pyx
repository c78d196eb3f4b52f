# cython: language_level=3
"""The fast path of `tree.parse`: libyaml's events read in C, straight into the tree.

PyYAML's `CParser` makes a Python event object (and two mark objects) for every node;
that alone cost more than the rest of a load. Here the same libyaml parser runs, and
each event becomes a value at once. Only the common shapes are handled: a file with an
anchor, an alias, a tag, a `<<` key, a second document, or anything wrong (bad syntax,
a repeated key, a limit) gives None, and the reference loop (`tree._compose`) builds
the tree or reports the problem, with its exact message and place.
"""

from cpython.dict cimport PyDict_Contains, PyDict_SetItem
from cpython.list cimport PyList_Append
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memcmp


cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void *PyUnicode_DATA(object o)

cdef enum:
    KEYS = 64  # mapping keys remembered (a DAG file uses a few dozen distinct ones)
    KEY_LEN = 40


cdef extern from "yaml.h":
    ctypedef enum yaml_event_type_t:
        YAML_NO_EVENT
        YAML_STREAM_START_EVENT
        YAML_STREAM_END_EVENT
        YAML_DOCUMENT_START_EVENT
        YAML_DOCUMENT_END_EVENT
        YAML_ALIAS_EVENT
        YAML_SCALAR_EVENT
        YAML_SEQUENCE_START_EVENT
        YAML_SEQUENCE_END_EVENT
        YAML_MAPPING_START_EVENT
        YAML_MAPPING_END_EVENT

    ctypedef enum yaml_scalar_style_t:
        YAML_ANY_SCALAR_STYLE
        YAML_PLAIN_SCALAR_STYLE

    ctypedef struct yaml_parser_t:
        pass

    # The event's union, as the fields this module reads (Cython emits the names only).
    ctypedef struct _event_scalar:
        unsigned char *anchor
        unsigned char *tag
        unsigned char *value
        size_t length
        yaml_scalar_style_t style
    ctypedef struct _event_collection:
        unsigned char *anchor
        unsigned char *tag
    ctypedef union _event_data:
        _event_scalar scalar
        _event_collection sequence_start
        _event_collection mapping_start

    ctypedef struct yaml_event_t:
        yaml_event_type_t type
        _event_data data

    int yaml_parser_initialize(yaml_parser_t *parser)
    void yaml_parser_delete(yaml_parser_t *parser)
    void yaml_parser_set_input_string(yaml_parser_t *parser, const unsigned char *input,
                                      size_t size)
    int yaml_parser_parse(yaml_parser_t *parser, yaml_event_t *event) nogil
    void yaml_event_delete(yaml_event_t *event)


cdef inline bint _is_null(const unsigned char *v, size_t n) noexcept:
    """The plain spellings of null: empty, `~`, `null`, `Null`, `NULL`."""
    if n == 0:
        return True
    if n == 1:
        return v[0] == b'~'
    if n != 4:
        return False
    if v[0] == b'n':
        return v[1] == b'u' and v[2] == b'l' and v[3] == b'l'
    if v[0] == b'N':
        return ((v[1] == b'u' and v[2] == b'l' and v[3] == b'l')
                or (v[1] == b'U' and v[2] == b'L' and v[3] == b'L'))
    return False


def compose(bytes data, bint steps_list, Py_ssize_t max_depth, Py_ssize_t max_values):
    """The tree `tree._compose(data, steps_list)` builds, or None where this path does
    not go (the reference then builds it, or says what is wrong, and where)."""
    cdef yaml_parser_t parser
    cdef yaml_event_t event
    if not yaml_parser_initialize(&parser):
        return None
    yaml_parser_set_input_string(&parser, <const unsigned char *>data, len(data))
    try:
        return _build(&parser, &event, steps_list, max_depth, max_values)
    finally:
        yaml_parser_delete(&parser)


cdef class _Keys:
    """The mapping keys seen so far, each made once: the 100,000th `command` key is the
    first one's object (no allocation, its hash already known)."""

    cdef list held
    cdef const char *text[KEYS]
    cdef size_t size[KEYS]
    cdef int n

    def __cinit__(self):
        self.held = []
        self.n = 0

    cdef object get(self, const unsigned char *text, size_t n):
        cdef int i
        cdef object key
        for i in range(self.n):
            if self.size[i] == n and memcmp(self.text[i], text, n) == 0:
                return self.held[i]
        key = PyUnicode_DecodeUTF8(<const char *>text, n, "strict")
        if self.n < KEYS and n <= KEY_LEN and PyUnicode_IS_COMPACT_ASCII(key):
            self.held.append(key)
            self.text[self.n] = <const char *>PyUnicode_DATA(key)
            self.size[self.n] = n
            self.n += 1
        return key


cdef object _build(yaml_parser_t *parser, yaml_event_t *event, bint steps_list,
                   Py_ssize_t max_depth, Py_ssize_t max_values):
    cdef _Keys keys = _Keys()
    cdef list top = []
    cdef list stack = []
    cdef object cur = top  # the open collection: a dict or a list
    cdef bint in_map = False
    cdef object key = None  # the open mapping's key, read, whose value is due
    cdef object value
    cdef Py_ssize_t count = 0, depth = 0, documents = 0
    cdef yaml_event_type_t t
    cdef const unsigned char *text
    cdef size_t n
    while True:
        if not yaml_parser_parse(parser, event):
            return None
        t = event.type
        try:
            if t == YAML_SCALAR_EVENT:
                if event.data.scalar.anchor != NULL or event.data.scalar.tag != NULL:
                    return None
                count += 1
                if count > max_values:
                    return None
                text = event.data.scalar.value
                n = event.data.scalar.length
                if in_map and key is None:
                    if (n == 2 and text[0] == b'<' and text[1] == b'<'
                            and event.data.scalar.style == YAML_PLAIN_SCALAR_STYLE):
                        return None  # a merge key (quoted, it is the text `<<`)
                    key = keys.get(text, n)
                    if PyDict_Contains(cur, key):
                        return None  # the reference says where it is repeated
                    continue
                if event.data.scalar.style == YAML_PLAIN_SCALAR_STYLE and _is_null(text, n):
                    value = None
                else:
                    value = PyUnicode_DecodeUTF8(<const char *>text, n, "strict")
                if in_map:
                    PyDict_SetItem(cur, key, value)
                    key = None
                else:
                    PyList_Append(cur, value)
            elif t == YAML_MAPPING_START_EVENT or t == YAML_SEQUENCE_START_EVENT:
                # sequence_start and mapping_start share their first two fields.
                if (event.data.mapping_start.anchor != NULL
                        or event.data.mapping_start.tag != NULL):
                    return None
                if in_map and key is None:
                    return None  # a collection as a key
                if depth >= max_depth:
                    return None
                count += 1
                if count > max_values:
                    return None
                value = {} if t == YAML_MAPPING_START_EVENT else []
                # Placed in its parent before it is filled: the order of keys is the
                # same, and nothing need remember the parent's key meanwhile.
                if in_map:
                    PyDict_SetItem(cur, key, value)
                    key = None
                else:
                    PyList_Append(cur, value)
                PyList_Append(stack, cur)
                cur = value
                in_map = t == YAML_MAPPING_START_EVENT
                depth += 1
            elif t == YAML_MAPPING_END_EVENT or t == YAML_SEQUENCE_END_EVENT:
                cur = stack.pop()
                in_map = type(cur) is dict
                depth -= 1
            elif t == YAML_DOCUMENT_START_EVENT:
                documents += 1
                if documents > 1:
                    return None
            elif t == YAML_STREAM_END_EVENT:
                break
            elif t == YAML_ALIAS_EVENT:
                return None
        except UnicodeDecodeError:
            return None
        finally:
            yaml_event_delete(event)
    if top and type(top[0]) is dict:
        return top[0]
    if steps_list and top and type(top[0]) is list:
        return {"steps": top[0]}
    return None


def events(bytes data):
    """How many events libyaml reads from `data`, making no Python object: the floor of
    any loader built on it (`bench/test_bench_load.py`); -1 on a YAML error."""
    cdef yaml_parser_t parser
    cdef yaml_event_t event
    cdef Py_ssize_t n = 0
    cdef yaml_event_type_t t
    if not yaml_parser_initialize(&parser):
        raise MemoryError
    yaml_parser_set_input_string(&parser, <const unsigned char *>data, len(data))
    try:
        while True:
            if not yaml_parser_parse(&parser, &event):
                return -1
            t = event.type
            yaml_event_delete(&event)
            n += 1
            if t == YAML_STREAM_END_EVENT:
                return n
    finally:
        yaml_parser_delete(&parser)
