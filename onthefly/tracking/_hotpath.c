/* The metric logging hot path in C: exp.metrics("train").log(loss=x, step=i).
 *
 * Built by `pip install -e .` (setup.py, optional: without a compiler the package falls back to the same
 * code in Python, onthefly/tracking/hotpath.py, which also documents the behaviour both share).
 *
 * RowLogger.log(**fields): the row is a dict of the keyword fields, its call time (time.time()) added under the
 * metric's row key, appended to the experiment's buffer `self._q` (see writer.py's docstring). Any
 * positional argument (a dict of fields) goes to the Python implementation, `self._log_slow`. A value that
 * is not a plain float/int/str/bool/None is snapshotted by `self._snapshot(fields)`, a Python method.
 *
 * Closing safety: `self._q` is read again right before the append, and nothing between that read and
 * the append can run Python code or release the GIL, so a row is either in the buffer the experiment
 * flushes at close, or the call raises (the buffer has been swapped for a refusing one). The Python
 * implementation gets the same guarantee by having close wait for calls in flight (inflight.py).
 *
 * Registry.__call__(name): `self._builders[name]` for the common one-argument call; anything else (a
 * miss, more arguments) goes to `self._get(...)`, a Python method.
 *
 * columns(dicts, keys, size): the writer thread's encoding of a batch of plain numeric rows into raw
 * float64 / int64 column bytes (columns.numeric_table turns them into Arrow arrays without copying).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

static PyObject *str_kick_at, *str_kick, *str_append, *str_log_slow, *str_snapshot, *str_get;

/* ---- RowLogger ---------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *q;
    PyObject *row_key;
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
    /* time.time(): CLOCK_REALTIME in nanoseconds, as seconds in a double */
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    long long ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    return PyFloat_FromDouble((double)ns / 1e9);
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

/* Call q.kick() when len(q) >= q.kick_at. 0 on success, -1 with an exception set. */
static int
kick_if_due(PyObject *q)
{
    Py_ssize_t n = PyObject_Length(q);
    if (n < 0) {
        return -1;
    }
    PyObject *kick_at = PyObject_GetAttr(q, str_kick_at);
    if (kick_at == NULL) {
        return -1;
    }
    Py_ssize_t at = PyLong_AsSsize_t(kick_at);
    Py_DECREF(kick_at);
    if (at == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (n < at) {
        return 0;
    }
    PyObject *r = PyObject_CallMethodNoArgs(q, str_kick);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static PyObject *
RowLogger_log(RowLogger *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs > 0 || self->q == NULL || self->row_key == NULL) {
        return slow_path((PyObject *)self, args, (size_t)nargs, kwnames);
    }
    PyObject *q = self->q;
    Py_INCREF(q);
    int rc = kick_if_due(q);
    Py_DECREF(q);
    if (rc < 0) {
        return NULL;
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
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
    rc = t == NULL ? -1 : PyDict_SetItem(fields, row_key, t);
    Py_XDECREF(t);
    Py_DECREF(row_key);
    if (rc < 0) {
        goto fail;
    }
    /* Read the buffer again and append with no Python code in between (see the top of this file). */
    q = self->q;
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
    return 0;
}

static int
RowLogger_clear(RowLogger *self)
{
    Py_CLEAR(self->q);
    Py_CLEAR(self->row_key);
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
    {"_q", T_OBJECT_EX, offsetof(RowLogger, q), 0, "the experiment's buffer (writer.Pending or Refusing)"},
    {"_row_key", T_OBJECT_EX, offsetof(RowLogger, row_key), 0, "the metric's row key (columns.metric_row_key)"},
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
    if ((str_kick_at = PyUnicode_InternFromString("kick_at")) == NULL
        || (str_kick = PyUnicode_InternFromString("kick")) == NULL
        || (str_append = PyUnicode_InternFromString("append")) == NULL
        || (str_log_slow = PyUnicode_InternFromString("_log_slow")) == NULL
        || (str_snapshot = PyUnicode_InternFromString("_snapshot")) == NULL
        || (str_get = PyUnicode_InternFromString("_get")) == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&moddef);
    if (module == NULL) {
        return NULL;
    }
    if (add_type(module, &RowLogger_spec, "RowLogger") < 0 || add_type(module, &Registry_spec, "Registry") < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
