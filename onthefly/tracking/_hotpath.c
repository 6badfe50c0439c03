/* The metric logging hot path in C: exp.metrics("train").log(loss=x, step=i).
 *
 * Built by `pip install -e .` (setup.py, optional: without a compiler the package falls back to the same
 * code in Python, onthefly/tracking/hotpath.py, which also documents the behaviour both share).
 *
 * RowLogger.log(**fields) has two paths.
 *  - Chunks: a row whose values are all exact floats or ints within int64, under field names that are not
 *    reserved, goes into the metric's open Chunk: its call time and values as raw 8-byte slots, no Python
 *    object per row. A chunk holds rows of one set of names (the call's kwnames) and one type per field;
 *    it is appended to the experiment's buffer `self._q` when it is created and holds `_chunk_rows` rows
 *    at most. The buffer counts it as one item; every further row adds one to the buffer's Tally
 *    (`q.tally.rows`, a C counter: no Python object touched per row) until the writer takes and seals the
 *    chunk (seal_all), so the size trigger counts rows, not chunks. A row that does not fit the open chunk
 *    (other names or types, the chunk full or sealed) starts a new one.
 *  - Dicts, for every other row: a dict of the keyword fields, its call time (time.time()) added under the
 *    metric's row key, appended to `self._q` (see writer.py's docstring).
 *  Both paths call `q.kick()` before storing a row when `len(q) + tally.rows >= tally.kick_at` (the rows
 *  waiting reach the trigger; the Python paths check the same with `tally.due(len(q))`). Any positional argument (a dict of fields) goes to the Python implementation,
 *    `self._log_slow`. A value that is not a plain float/int/str/bool/None is snapshotted by
 *    `self._snapshot(fields)`, a Python method. A dict row first detaches the open chunk, so the metric's
 *    rows stay in call order in the buffer; so does assigning `_q`.
 *
 * Closing safety: a row is either in the buffer the experiment flushes at close, or the call raises. The
 * dict path reads `self._q` again right before the append, and nothing between that read and the append
 * can run Python code or release the GIL; closing swaps the buffer for a refusing one. An open chunk is in
 * the buffer until the writer takes it and seals it (close's final write does); a row that reaches it
 * before that is written with it, and after it the next row needs a new chunk, which the refusing buffer
 * refuses. The Python implementation gets the same guarantee by having close wait for calls in flight
 * (inflight.py).
 *
 * Registry.__call__(name): `self._builders[name]` for the common one-argument call; anything else (a
 * miss, more arguments) goes to `self._get(...)`, a Python method.
 *
 * columns(dicts, keys, size): the writer thread's encoding of a batch of plain numeric rows into raw
 * float64 / int64 column bytes (columns.numeric_table turns them into Arrow arrays without copying).
 * Chunk.columns() gives a chunk's columns in the same form.
 *
 * configure(reserved, prefix): the field names a chunk must not hold (timestamp aliases) and the row-key
 * prefix; the chunk path is off until columns.py has called it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define MAX_FIELDS 64

static PyObject *str_kick, *str_append, *str_log_slow, *str_snapshot, *str_get, *str_tally;
static PyObject *reserved_names;  /* frozenset of str, set by configure() */
static PyObject *row_key_prefix;  /* str, set by configure() */
static PyTypeObject *Chunk_Type, *Tally_Type;

/* ---- Chunk ---------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *row_key;       /* the metric's row key (str) */
    PyObject *names;         /* the fields (tuple of str), in call order */
    Py_ssize_t nfields, n, cap, alloc;
    Py_ssize_t accounted;    /* rows added to its buffer's tally (n - 1) until sealed, then given back */
    int sealed;
    char types[MAX_FIELDS];  /* per field: 'd' (float64) or 'q' (int64) */
    uint64_t *slots;         /* row-major: per row, the call time (a double) then the fields' 8 bytes each */
} Chunk;

#if defined(_MSC_VER)
#define THREAD_LOCAL __declspec(thread)
#else
#define THREAD_LOCAL _Thread_local
#endif

/* This thread's latest metric call time, for ``_ts=-1`` (ML-Dash: inherit the timestamp of this thread's
 * last metric or track call); read by last_time(). A plain thread-local double: no cost worth measuring. */
static THREAD_LOCAL double last_row_time = 0.0;

static double
now_seconds(void)
{
    /* time.time(): CLOCK_REALTIME in nanoseconds, as seconds in a double */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double t = (double)((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec) / 1e9;
    last_row_time = t;
    return t;
}

static PyObject *
last_time(PyObject *module, PyObject *unused)
{
    return PyFloat_FromDouble(last_row_time);
}

/* The type code a value takes in a chunk column: 'd', 'q', or 0 when it cannot go into a chunk. */
static char
slot_type(PyObject *v)
{
    if (Py_TYPE(v) == &PyFloat_Type) {
        return 'd';
    }
    if (Py_TYPE(v) == &PyLong_Type) {
        int overflow = 0;
        (void)PyLong_AsLongLongAndOverflow(v, &overflow);  /* cannot fail for an exact int */
        return overflow ? 0 : 'q';
    }
    return 0;
}

/* Add one row to the chunk: 1 when stored, 0 when a value does not fit its column (nothing stored). */
static int
chunk_add(Chunk *c, PyObject *const *args)
{
    if (c->n == c->alloc) {
        Py_ssize_t alloc = c->alloc * 2 < c->cap ? c->alloc * 2 : c->cap;
        uint64_t *grown = PyMem_Realloc(c->slots, (size_t)alloc * (size_t)(c->nfields + 1) * 8);
        if (grown == NULL) {
            return 0;  /* the row goes the dict path, which raises MemoryError if it must */
        }
        c->slots = grown;
        c->alloc = alloc;
    }
    uint64_t *row = c->slots + c->n * (c->nfields + 1);
    for (Py_ssize_t k = 0; k < c->nfields; k++) {
        PyObject *v = args[k];
        if (c->types[k] == 'd') {
            if (Py_TYPE(v) != &PyFloat_Type) {
                return 0;
            }
            double x = PyFloat_AS_DOUBLE(v);
            memcpy(row + 1 + k, &x, 8);
        } else {
            if (Py_TYPE(v) != &PyLong_Type) {
                return 0;
            }
            int overflow = 0;
            long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (overflow) {
                return 0;
            }
            memcpy(row + 1 + k, &x, 8);
        }
    }
    double t = now_seconds();
    memcpy(row, &t, 8);
    c->n++;
    return 1;
}

/* Whether a row of names ``kwnames`` and values ``args`` can start a chunk: every value fits a column (its
 * type code goes into ``types``), and no name is reserved (a timestamp alias, the row-key prefix). */
static int
chunkable(PyObject *const *args, PyObject *kwnames, char *types)
{
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kwnames); k++) {
        types[k] = slot_type(args[k]);
        if (types[k] == 0) {
            return 0;
        }
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int reserved = PySet_Contains(reserved_names, name);
        Py_ssize_t prefixed = reserved == 0 ? PyUnicode_Tailmatch(name, row_key_prefix, 0, PY_SSIZE_T_MAX, -1) : 0;
        if (reserved != 0 || prefixed != 0) {
            PyErr_Clear();  /* (an error here cannot happen for str names; the dict path then decides) */
            return 0;
        }
    }
    return 1;
}

/* A new, empty chunk for rows of names ``kwnames`` and column ``types`` (from chunkable()); NULL with no
 * exception set when out of memory (the row then goes the dict path). */
static Chunk *
chunk_new(PyObject *row_key, PyObject *kwnames, const char *types, Py_ssize_t cap)
{
    Py_ssize_t nfields = PyTuple_GET_SIZE(kwnames);
    Chunk *c = PyObject_New(Chunk, Chunk_Type);
    if (c == NULL) {
        PyErr_Clear();
        return NULL;
    }
    c->alloc = cap < 128 ? cap : 128;  /* the default batch size (100) in one allocation */
    c->slots = PyMem_Malloc((size_t)c->alloc * (size_t)(nfields + 1) * 8);
    if (c->slots == NULL) {
        c->row_key = c->names = NULL;
        Py_DECREF(c);
        return NULL;
    }
    Py_INCREF(row_key);
    Py_INCREF(kwnames);
    c->row_key = row_key;
    c->names = kwnames;
    c->nfields = nfields;
    c->n = 0;
    c->cap = cap;
    c->accounted = 0;
    c->sealed = 0;
    memcpy(c->types, types, (size_t)nfields);
    return c;
}

static void
Chunk_dealloc(Chunk *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_XDECREF(self->row_key);
    Py_XDECREF(self->names);
    PyMem_Free(self->slots);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static Py_ssize_t
Chunk_len(Chunk *self)
{
    return self->n;
}

/* columns(): [('d', times), (type, values) per field], raw 8-byte values as bytes. */
static PyObject *
Chunk_columns(Chunk *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t width = self->nfields + 1, n = self->n;
    PyObject *out = PyList_New(width);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t k = 0; k < width; k++) {
        PyObject *raw = PyBytes_FromStringAndSize(NULL, n * 8);
        if (raw == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        char *dst = PyBytes_AS_STRING(raw);
        for (Py_ssize_t i = 0; i < n; i++) {
            memcpy(dst + 8 * i, self->slots + i * width + k, 8);
        }
        PyObject *item = Py_BuildValue("(CN)", k == 0 ? 'd' : self->types[k - 1], raw);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, k, item);
    }
    return out;
}

static PyObject *
Chunk_get_types(Chunk *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromStringAndSize(self->types, self->nfields);
}

static PyObject *
Chunk_get_last_time(Chunk *self, void *Py_UNUSED(closure))
{
    if (self->n == 0) {
        Py_RETURN_NONE;
    }
    double t;
    memcpy(&t, self->slots + (self->n - 1) * (self->nfields + 1), 8);
    return PyFloat_FromDouble(t);
}

static PyMemberDef Chunk_members[] = {
    {"row_key", T_OBJECT, offsetof(Chunk, row_key), READONLY, "the metric's row key"},
    {"names", T_OBJECT, offsetof(Chunk, names), READONLY, "the field names, in call order"},
    {NULL},
};

static PyGetSetDef Chunk_getset[] = {
    {"types", (getter)Chunk_get_types, NULL, "per field: 'd' (float64) or 'q' (int64)", NULL},
    {"last_time", (getter)Chunk_get_last_time, NULL, "the call time of the last row (None when empty)", NULL},
    {NULL},
};

static PyMethodDef Chunk_methods[] = {
    {"columns", (PyCFunction)Chunk_columns, METH_NOARGS,
     "columns(): [('d', call times), (type code, values) per field] as raw 8-byte values"},
    {NULL},
};

static PyType_Slot Chunk_slots[] = {
    {Py_tp_doc, "Rows of one metric with the same field names and types, as raw 8-byte values (a buffer item)."},
    {Py_tp_dealloc, Chunk_dealloc},
    {Py_sq_length, Chunk_len},
    {Py_tp_members, Chunk_members},
    {Py_tp_getset, Chunk_getset},
    {Py_tp_methods, Chunk_methods},
    {0, NULL},
};

static PyType_Spec Chunk_spec = {
    "onthefly.tracking._hotpath.Chunk", sizeof(Chunk), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    Chunk_slots,
};

/* ---- Tally: the buffer's row count and size trigger, as C integers ---------------------------------- */

typedef struct {
    PyObject_HEAD
    Py_ssize_t rows;     /* rows that chunks in the buffer hold beyond the one item each counts as */
    Py_ssize_t kick_at;  /* call q.kick() before storing a row once len(q) + rows reaches this */
} Tally;

static PyMemberDef Tally_members[] = {
    {"rows", T_PYSSIZET, offsetof(Tally, rows), 0, "rows that chunks hold beyond their one item each"},
    {"kick_at", T_PYSSIZET, offsetof(Tally, kick_at), 0, "kick before storing a row once len(q) + rows reaches it"},
    {NULL},
};

/* due(n): whether a buffer of ``n`` items has reached the trigger (n + rows >= kick_at): the Python paths'
 * check, one C call instead of reading two int members. */
static PyObject *
Tally_due(Tally *self, PyObject *n)
{
    Py_ssize_t items = PyLong_AsSsize_t(n);
    if (items == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return PyBool_FromLong(items + self->rows >= self->kick_at);
}

static PyMethodDef Tally_methods[] = {
    {"due", (PyCFunction)Tally_due, METH_O, "due(n): n + rows >= kick_at (a buffer of n items is due a kick)"},
    {NULL},
};

static PyType_Slot Tally_slots[] = {
    {Py_tp_doc, "Tally(): a buffer's rows beyond its items and its size trigger (both 0 at first)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_members, Tally_members},
    {Py_tp_methods, Tally_methods},
    {0, NULL},
};

static PyType_Spec Tally_spec = {
    "onthefly.tracking._hotpath.Tally", sizeof(Tally), 0, Py_TPFLAGS_DEFAULT, Tally_slots,
};

/* seal_all(items, tally): seal every chunk among ``items`` (taken from the buffer) and give back the rows
 * each counted in the buffer's ``tally``. */
static PyObject *
seal_all(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_CheckExact(args[0]) || Py_TYPE(args[1]) != Tally_Type) {
        PyErr_SetString(PyExc_TypeError, "seal_all(items: list, tally: Tally)");
        return NULL;
    }
    Py_ssize_t released = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(args[0]); i++) {
        PyObject *item = PyList_GET_ITEM(args[0], i);
        if (Py_TYPE(item) == Chunk_Type && !((Chunk *)item)->sealed) {
            ((Chunk *)item)->sealed = 1;
            released += ((Chunk *)item)->accounted;
        }
    }
    ((Tally *)args[1])->rows -= released;
    Py_RETURN_NONE;
}

static PyObject *
configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyFrozenSet_CheckExact(args[0]) || !PyUnicode_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "configure(reserved: frozenset, prefix: str)");
        return NULL;
    }
    Py_INCREF(args[0]);
    Py_XSETREF(reserved_names, args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(row_key_prefix, args[1]);
    Py_RETURN_NONE;
}

/* ---- RowLogger ---------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *q;
    Tally *tally;             /* q.tally, read when q is assigned; NULL: every row goes to _log_slow */
    PyObject *row_key;
    Chunk *chunk;             /* the open chunk, or NULL */
    Py_ssize_t chunk_rows;    /* a chunk's capacity; below 2: no chunks */
} RowLogger;

static int
is_plain(PyObject *v)
{
    PyTypeObject *t = Py_TYPE(v);
    return t == &PyFloat_Type || t == &PyLong_Type || t == &PyUnicode_Type || t == &PyBool_Type
           || v == Py_None;
}

static PyObject *
now(void)
{
    return PyFloat_FromDouble(now_seconds());
}

/* A dict sized for ``n`` items: no resize while the row is filled (measured: ~1-3 us less per call right
 * after a training step, when a resize's allocation and rehash run with cold caches). */
static PyObject *
new_dict(Py_ssize_t n)
{
#if PY_VERSION_HEX < 0x030D0000
    return _PyDict_NewPresized(n);
#else
    (void)n;
    return PyDict_New();
#endif
}

static PyObject *
slow_path(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *slow = PyObject_GetAttr(self, str_log_slow);
    if (slow == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_Vectorcall(slow, args, nargsf, kwnames);
    Py_DECREF(slow);
    return result;
}

/* Before storing a row: call q.kick() when the rows waiting, len(q) + tally.rows, reach tally.kick_at.
 * 0 on success, -1 with an exception set. The kick may run Python code (the writer's policy when it falls
 * behind) and swap self->q: callers read self->q, self->tally and self->chunk again after it. */
static int
kick_if_due(RowLogger *self)
{
    PyObject *q = self->q;
    Py_ssize_t n = PyObject_Length(q);
    if (n < 0) {
        return -1;
    }
    if (n + self->tally->rows < self->tally->kick_at) {
        return 0;
    }
    Py_INCREF(q);
    PyObject *r = PyObject_CallMethodNoArgs(q, str_kick);
    Py_DECREF(q);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* The chunk path of log(): 1 when the row was stored in a chunk, 0 when it must go the dict path (the open
 * chunk detached), -1 with an exception set (the buffer refused a new chunk, or its kick raised). */
static int
log_to_chunk(RowLogger *self, PyObject *const *args, PyObject *kwnames)
{
    char types[MAX_FIELDS];
    int typed = 0;  /* whether types holds this row's column types (chunkable() ran and said yes) */
    if (self->chunk == NULL) {
        if (!chunkable(args, kwnames, types)) {
            return 0;  /* (the dict path checks the trigger) */
        }
        typed = 1;
    }
    if (kick_if_due(self) < 0) {
        return -1;
    }
    if (self->q == NULL || self->tally == NULL) {  /* the kick deleted or replaced _q (no tally) */
        PyErr_SetString(PyExc_AttributeError, "_q");
        return -1;
    }
    Chunk *c = self->chunk;
    if (c != NULL && !c->sealed && c->n < c->cap
        && (c->names == kwnames || PyObject_RichCompareBool(c->names, kwnames, Py_EQ) == 1)) {
        if (chunk_add(c, args)) {
            c->accounted++;  /* its first row is its one item in the buffer; every further row counts here */
            self->tally->rows++;
            return 1;
        }
    }
    Py_CLEAR(self->chunk);
    if (PyErr_Occurred()) {  /* from the names' comparison */
        return -1;
    }
    if (!typed && !chunkable(args, kwnames, types)) {
        return 0;
    }
    c = chunk_new(self->row_key, kwnames, types, self->chunk_rows);
    if (c == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (!chunk_add(c, args)) {  /* only when out of memory */
        Py_DECREF(c);
        return 0;
    }
    PyObject *q = self->q;  /* no Python code since the kick: the buffer whose tally counts this chunk */
    Py_INCREF(q);
    PyObject *r = PyObject_CallMethodOneArg(q, str_append, (PyObject *)c);
    Py_DECREF(q);
    if (r == NULL) {
        Py_DECREF(c);
        return -1;
    }
    Py_DECREF(r);
    Py_XSETREF(self->chunk, c);
    return 1;
}

static PyObject *
RowLogger_log(RowLogger *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs > 0 || self->q == NULL || self->tally == NULL || self->row_key == NULL) {
        Py_CLEAR(self->chunk);
        return slow_path((PyObject *)self, args, (size_t)nargs, kwnames);
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nkw > 0 && nkw <= MAX_FIELDS && self->chunk_rows > 1 && reserved_names != NULL) {
        int stored = log_to_chunk(self, args, kwnames);
        if (stored < 0) {
            return NULL;
        }
        if (stored) {
            Py_INCREF(self);
            return (PyObject *)self;
        }
    }
    else {
        Py_CLEAR(self->chunk);
    }
    if (reserved_names != NULL) {
        /* a row with a timestamp field (_ts, timestamp) is resolved in Python (log_rows) */
        for (Py_ssize_t i = 0; i < nkw; i++) {
            int found = PySet_Contains(reserved_names, PyTuple_GET_ITEM(kwnames, i));
            if (found < 0) {
                return NULL;
            }
            if (found) {
                Py_CLEAR(self->chunk);
                return slow_path((PyObject *)self, args, (size_t)nargs, kwnames);
            }
        }
    }
    if (kick_if_due(self) < 0) {
        return NULL;
    }
    PyObject *fields = new_dict(nkw + 1);  /* the fields and the row key */
    if (fields == NULL) {
        return NULL;
    }
    int plain = 1;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *value = args[i];
        if (PyDict_SetItem(fields, PyTuple_GET_ITEM(kwnames, i), value) < 0) {
            goto fail;
        }
        plain &= is_plain(value);
    }
    if (!plain) {
        PyObject *r = PyObject_CallMethodOneArg((PyObject *)self, str_snapshot, fields);
        if (r == NULL) {
            goto fail;
        }
        Py_DECREF(r);
    }
    PyObject *row_key = self->row_key;
    if (row_key == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_row_key");
        goto fail;
    }
    Py_INCREF(row_key);
    PyObject *t = now();
    int rc = t == NULL ? -1 : PyDict_SetItem(fields, row_key, t);
    Py_XDECREF(t);
    Py_DECREF(row_key);
    if (rc < 0) {
        goto fail;
    }
    /* Read the buffer again and append with no Python code in between (see the top of this file). */
    PyObject *q = self->q;
    if (q == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_q");
        goto fail;
    }
    Py_INCREF(q);
    PyObject *r = PyObject_CallMethodOneArg(q, str_append, fields);
    Py_DECREF(q);
    Py_DECREF(fields);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_INCREF(self);
    return (PyObject *)self;
fail:
    Py_DECREF(fields);
    return NULL;
}

static int
RowLogger_traverse(RowLogger *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->q);
    Py_VISIT(self->row_key);
    return 0;  /* the chunk and the tally hold no references: nothing to visit */
}

static int
RowLogger_clear(RowLogger *self)
{
    Py_CLEAR(self->q);
    Py_CLEAR(self->tally);
    Py_CLEAR(self->row_key);
    Py_CLEAR(self->chunk);
    return 0;
}

static PyObject *
RowLogger_get_q(RowLogger *self, void *Py_UNUSED(closure))
{
    if (self->q == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_q");
        return NULL;
    }
    Py_INCREF(self->q);
    return self->q;
}

/* Assigning the buffer detaches the open chunk (its rows belong to the old buffer) and reads the new one's
 * Tally (``value.tally``; without one, every row goes to _log_slow). */
static int
RowLogger_set_q(RowLogger *self, PyObject *value, void *Py_UNUSED(closure))
{
    Tally *tally = NULL;
    if (value != NULL) {
        PyObject *found = PyObject_GetAttr(value, str_tally);
        if (found == NULL) {
            PyErr_Clear();
        } else if (Py_TYPE(found) == Tally_Type) {
            tally = (Tally *)found;
        } else {
            Py_DECREF(found);
        }
    }
    Py_XSETREF(self->tally, tally);
    Py_XINCREF(value);
    Py_XSETREF(self->q, value);
    Py_CLEAR(self->chunk);
    return 0;
}

static void
RowLogger_dealloc(RowLogger *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    RowLogger_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMemberDef RowLogger_members[] = {
    {"_row_key", T_OBJECT_EX, offsetof(RowLogger, row_key), 0, "the metric's row key (columns.metric_row_key)"},
    {"_chunk_rows", T_PYSSIZET, offsetof(RowLogger, chunk_rows), 0, "a chunk's capacity in rows; below 2: none"},
    {NULL},
};

static PyGetSetDef RowLogger_getset[] = {
    {"_q", (getter)RowLogger_get_q, (setter)RowLogger_set_q,
     "the experiment's buffer (writer.Pending or Refusing); assigning it detaches the open chunk and reads "
     "its tally", NULL},
    {NULL},
};

static PyMethodDef RowLogger_methods[] = {
    {"log", (PyCFunction)(void (*)(void))RowLogger_log, METH_FASTCALL | METH_KEYWORDS,
     "log(**fields): record one row; see onthefly.tracking.metrics.MetricBuilder.log"},
    {NULL},
};

static PyType_Slot RowLogger_slots[] = {
    {Py_tp_doc, "Base of MetricBuilder: the C logging hot path."},
    {Py_tp_traverse, RowLogger_traverse},
    {Py_tp_clear, RowLogger_clear},
    {Py_tp_dealloc, RowLogger_dealloc},
    {Py_tp_members, RowLogger_members},
    {Py_tp_getset, RowLogger_getset},
    {Py_tp_methods, RowLogger_methods},
    {0, NULL},
};

static PyType_Spec RowLogger_spec = {
    "onthefly.tracking._hotpath.RowLogger", sizeof(RowLogger), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, RowLogger_slots,
};

/* ---- Registry ----------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *builders;
} Registry;

static PyObject *
Registry_call(Registry *self, PyObject *args, PyObject *kwargs)
{
    if (self->builders != NULL && PyDict_CheckExact(self->builders) && PyTuple_GET_SIZE(args) == 1
        && (kwargs == NULL || PyDict_GET_SIZE(kwargs) == 0)) {
        PyObject *found = PyDict_GetItemWithError(self->builders, PyTuple_GET_ITEM(args, 0));
        if (found != NULL) {
            Py_INCREF(found);
            return found;
        }
        if (PyErr_Occurred()) {
            return NULL;  /* an unhashable name */
        }
    }
    PyObject *get = PyObject_GetAttr((PyObject *)self, str_get);
    if (get == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_Call(get, args, kwargs);
    Py_DECREF(get);
    return result;
}

static int
Registry_traverse(Registry *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->builders);
    return 0;
}

static int
Registry_clear(Registry *self)
{
    Py_CLEAR(self->builders);
    return 0;
}

static void
Registry_dealloc(Registry *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Registry_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMemberDef Registry_members[] = {
    {"_builders", T_OBJECT_EX, offsetof(Registry, builders), 0, "{name: builder}"},
    {NULL},
};

static PyType_Slot Registry_slots[] = {
    {Py_tp_doc, "Base of Metrics: exp.metrics(name) looks the builder up in C."},
    {Py_tp_call, Registry_call},
    {Py_tp_traverse, Registry_traverse},
    {Py_tp_clear, Registry_clear},
    {Py_tp_dealloc, Registry_dealloc},
    {Py_tp_members, Registry_members},
    {0, NULL},
};

static PyType_Spec Registry_spec = {
    "onthefly.tracking._hotpath.Registry", sizeof(Registry), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, Registry_slots,
};

/* ---- columns (the writer thread's encoding) ------------------------------------------------------ */

/* columns(dicts, keys, size): the columns of a batch of plain numeric rows, or None. Not None only when
 * every dict has exactly ``size`` keys including all of ``keys``, and each key's values are all exact
 * floats or all exact ints within int64; then a list with, per key, ('d', bytes) or ('q', bytes): the raw
 * float64 / int64 values. One pass over the rows (each row's keys together), stopping at the first value
 * that does not fit: the Python path (columns.rows_to_table) handles every other batch. */
static PyObject *
columns(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "columns(dicts: list, keys: tuple, size: int)");
        return NULL;
    }
    PyObject *dicts = args[0], *keys = args[1];
    Py_ssize_t size = PyLong_AsSsize_t(args[2]);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(dicts), nkeys = PyTuple_GET_SIZE(keys);
    PyObject *first = n ? PyList_GET_ITEM(dicts, 0) : NULL;
    if (n == 0 || nkeys > 64 || !PyDict_CheckExact(first)) {
        Py_RETURN_NONE;
    }
    PyObject *out = PyList_New(nkeys);  /* NULL items until filled */
    if (out == NULL) {
        return NULL;
    }
    PyTypeObject *types[64];
    char *buffers[64];
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *v = PyDict_GetItemWithError(first, PyTuple_GET_ITEM(keys, k));
        if (v == NULL || (Py_TYPE(v) != &PyFloat_Type && Py_TYPE(v) != &PyLong_Type)) {
            goto none;
        }
        types[k] = Py_TYPE(v);
        PyObject *raw = PyBytes_FromStringAndSize(NULL, n * 8);
        if (raw == NULL) {
            goto none;
        }
        PyObject *item = Py_BuildValue("(CN)", types[k] == &PyFloat_Type ? 'd' : 'q', raw);
        if (item == NULL) {
            goto none;
        }
        PyList_SET_ITEM(out, k, item);
        buffers[k] = PyBytes_AS_STRING(raw);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyList_GET_ITEM(dicts, i);
        if (!PyDict_CheckExact(d) || PyDict_GET_SIZE(d) != size) {
            goto none;
        }
        for (Py_ssize_t k = 0; k < nkeys; k++) {
            PyObject *v = PyDict_GetItemWithError(d, PyTuple_GET_ITEM(keys, k));
            if (v == NULL || Py_TYPE(v) != types[k]) {
                goto none;
            }
            if (types[k] == &PyFloat_Type) {
                double x = PyFloat_AS_DOUBLE(v);
                memcpy(buffers[k] + 8 * i, &x, 8);
            } else {
                int overflow = 0;
                long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
                if (overflow) {
                    goto none;
                }
                memcpy(buffers[k] + 8 * i, &x, 8);
            }
        }
    }
    return out;
none:
    Py_DECREF(out);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"columns", (PyCFunction)(void (*)(void))columns, METH_FASTCALL,
     "columns(dicts, keys, size): float64/int64 column bytes of plain numeric rows, or None"},
    {"seal_all", (PyCFunction)(void (*)(void))seal_all, METH_FASTCALL,
     "seal_all(items, tally): seal the chunks among items taken from a buffer and give back the rows they "
     "counted in its tally"},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "configure(reserved, prefix): field names a chunk must not hold, and the row-key prefix"},
    {"last_time", (PyCFunction)last_time, METH_NOARGS,
     "last_time(): this thread's latest metric call time through the C path (0.0 before any)"},
    {NULL},
};

/* ---- module ------------------------------------------------------------------------------------- */

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "onthefly.tracking._hotpath", "The metric logging hot path in C.", -1, module_methods,
};

static int
add_type(PyObject *module, PyType_Spec *spec, const char *name)
{
    PyObject *type = PyType_FromSpec(spec);
    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, name, type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC
PyInit__hotpath(void)
{
    if ((str_kick = PyUnicode_InternFromString("kick")) == NULL
        || (str_append = PyUnicode_InternFromString("append")) == NULL
        || (str_log_slow = PyUnicode_InternFromString("_log_slow")) == NULL
        || (str_snapshot = PyUnicode_InternFromString("_snapshot")) == NULL
        || (str_get = PyUnicode_InternFromString("_get")) == NULL
        || (str_tally = PyUnicode_InternFromString("tally")) == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&moddef);
    if (module == NULL) {
        return NULL;
    }
    if (add_type(module, &RowLogger_spec, "RowLogger") < 0 || add_type(module, &Registry_spec, "Registry") < 0
        || add_type(module, &Chunk_spec, "Chunk") < 0 || add_type(module, &Tally_spec, "Tally") < 0) {
        Py_DECREF(module);
        return NULL;
    }
    /* references kept for good */
    Chunk_Type = (PyTypeObject *)PyObject_GetAttrString(module, "Chunk");
    Tally_Type = (PyTypeObject *)PyObject_GetAttrString(module, "Tally");
    if (Chunk_Type == NULL || Tally_Type == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
