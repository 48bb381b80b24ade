/*
 * The optional native part of bulk ingest (``vitalops.ingest.native`` is its Python face and
 * holds the pure-Python equivalent of each function, which a test holds it to):
 *
 *   gather(objects, specs) - elements of every decoded line as the buffers of Arrow columns, one
 *       per (path, kind, sentinel) spec, walking attributes at C speed instead of building lists;
 *   hmac_sha256_hex(ipad, opad, prefix, offsets, data, count) - pseudonyms of a text column,
 *       HMAC-SHA256 (RFC 2104) with the padded keys given, hex;
 *   sha256_rows_hex(columns, count) - fact ids: SHA-256 (hex) of each row's fields as text,
 *       joined by 0x1f, a float spelt as Python's repr and a null as "None".
 *
 * Hashing runs on OpenSSL's libcrypto (the one Python's hashlib uses) with the GIL released.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_CTX: a context copied per message costs nothing */
#include <Python.h>
#include <structmember.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

enum { KIND_TEXT = 0, KIND_RAW = 1, KIND_FLOAT = 2, KIND_LENGTH = 3, KIND_IS = 4 };
enum { COLUMN_TEXT = 0, COLUMN_FLOAT = 1, COLUMN_INT = 2 };

typedef struct {
    char *data;
    size_t size;
    size_t capacity;
} Buffer;

static int buffer_reserve(Buffer *buffer, size_t more) {
    if (buffer->size + more <= buffer->capacity) {
        return 0;
    }
    size_t capacity = buffer->capacity ? buffer->capacity : 4096;
    while (capacity < buffer->size + more) {
        capacity *= 2;
    }
    char *grown = PyMem_RawRealloc(buffer->data, capacity);
    if (grown == NULL) {
        return -1;
    }
    buffer->data = grown;
    buffer->capacity = capacity;
    return 0;
}

static int buffer_append(Buffer *buffer, const void *bytes, size_t size) {
    if (buffer_reserve(buffer, size) < 0) {
        return -1;
    }
    memcpy(buffer->data + buffer->size, bytes, size);
    buffer->size += size;
    return 0;
}

static PyObject *bytes_of(const void *data, size_t size) {
    return PyBytes_FromStringAndSize(size ? (const char *)data : "", (Py_ssize_t)size);
}

#define MAX_DEPTH 8

/* Where an attribute lives in objects of one type: a slot (a ``__slots__`` or msgspec Struct
 * field, read directly) or, with ``offset`` -1, wherever ``getattr`` finds it. */
typedef struct {
    PyTypeObject *type;
    Py_ssize_t offset;
} Slot;

static Py_ssize_t slot_offset(PyTypeObject *type, PyObject *name) {
    PyObject *descriptor = _PyType_Lookup(type, name); /* borrowed */
    if (descriptor != NULL && Py_IS_TYPE(descriptor, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descriptor)->d_member;
        if (member->type == T_OBJECT_EX && !(member->flags & READ_RESTRICTED)) {
            return member->offset;
        }
    }
    return -1;
}

/* The element at ``path`` (a tuple of attribute names) of ``object``: a new reference, None when
 * an object on the way is None, NULL with an exception set when an attribute is missing. */
static PyObject *walk(PyObject *object, PyObject *path, Slot *slots) {
    Py_ssize_t depth = PyTuple_GET_SIZE(path);
    Py_INCREF(object);
    for (Py_ssize_t i = 0; i < depth; i++) {
        if (object == Py_None) {
            return object;
        }
        PyObject *name = PyTuple_GET_ITEM(path, i);
        PyTypeObject *type = Py_TYPE(object);
        if (slots[i].type != type) {
            slots[i].type = type;
            slots[i].offset = slot_offset(type, name);
        }
        PyObject *next;
        if (slots[i].offset >= 0) {
            next = *(PyObject **)((char *)object + slots[i].offset);
            if (next == NULL) { /* an unset slot: let getattr say so */
                next = PyObject_GetAttr(object, name);
            } else {
                Py_INCREF(next);
            }
        } else {
            next = PyObject_GetAttr(object, name);
        }
        Py_DECREF(object);
        if (next == NULL) {
            return NULL;
        }
        object = next;
    }
    return object;
}

/* What gather reads of every object, and the column it builds. */
typedef struct {
    PyObject *path; /* borrowed: a tuple of attribute names */
    PyObject *sentinel; /* borrowed */
    Slot slots[MAX_DEPTH];
    int kind;
    Buffer values, data;
    uint8_t *validity;
    Py_ssize_t nulls;
} Gathered;

static int gather_one(Gathered *column, PyObject *object, Py_ssize_t i) {
    PyObject *element = walk(object, column->path, column->slots);
    if (element == NULL) {
        return -1;
    }
    int present = element != Py_None;
    int kind = column->kind;
    int failed = 0;
    if (kind == KIND_TEXT) {
        if (present) {
            Py_ssize_t size;
            const char *text = PyUnicode_AsUTF8AndSize(element, &size);
            if (text == NULL) {
                Py_DECREF(element);
                return -1;
            }
            failed = buffer_append(&column->data, text, (size_t)size);
        }
        int64_t end = (int64_t)column->data.size;
        failed |= buffer_append(&column->values, &end, 8);
    } else if (kind == KIND_RAW) {
        Py_buffer view;
        if (PyObject_GetBuffer(element, &view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(element);
            return -1;
        }
        failed = buffer_append(&column->data, view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
        int64_t end = (int64_t)column->data.size;
        failed |= buffer_append(&column->values, &end, 8);
    } else if (kind == KIND_FLOAT) {
        double number = 0.0;
        if (present) {
            number = PyFloat_AsDouble(element);
            if (number == -1.0 && PyErr_Occurred()) {
                Py_DECREF(element);
                return -1;
            }
        }
        failed = buffer_append(&column->values, &number, 8);
    } else if (kind == KIND_LENGTH) {
        Py_ssize_t length = present ? PyObject_Length(element) : 0;
        if (length < 0) {
            Py_DECREF(element);
            return -1;
        }
        int64_t size = (int64_t)length;
        failed = buffer_append(&column->values, &size, 8);
    } else {
        char same = (char)(element == column->sentinel);
        failed = buffer_append(&column->values, &same, 1);
    }
    Py_DECREF(element);
    if (failed) {
        PyErr_NoMemory();
        return -1;
    }
    if (present) {
        column->validity[i / 8] |= (uint8_t)(1u << (i % 8));
    } else {
        column->nulls++;
    }
    return 0;
}

static PyObject *gather(PyObject *module, PyObject *args) {
    PyObject *objects, *specs;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &objects, &PyList_Type, &specs)) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(objects);
    Py_ssize_t width = PyList_GET_SIZE(specs);
    size_t bitmap_size = (size_t)(count + 7) / 8;
    Gathered *columns = PyMem_RawCalloc((size_t)(width ? width : 1), sizeof(Gathered));
    PyObject *result = NULL;
    if (columns == NULL) {
        return PyErr_NoMemory();
    }
    for (Py_ssize_t c = 0; c < width; c++) {
        Gathered *column = &columns[c];
        /* (path, kind, sentinel) */
        if (!PyArg_ParseTuple(PyList_GET_ITEM(specs, c), "O!iO", &PyTuple_Type, &column->path, &column->kind,
                              &column->sentinel)) {
            goto done;
        }
        if (PyTuple_GET_SIZE(column->path) > MAX_DEPTH) {
            PyErr_SetString(PyExc_ValueError, "gather: path too deep");
            goto done;
        }
        if (column->kind < KIND_TEXT || column->kind > KIND_IS) {
            PyErr_SetString(PyExc_ValueError, "gather: unknown kind");
            goto done;
        }
        column->validity = PyMem_RawCalloc(bitmap_size ? bitmap_size : 1, 1);
        size_t width_of = column->kind == KIND_IS ? 1 : 8;
        if (column->validity == NULL || buffer_reserve(&column->values, ((size_t)count + 1) * width_of) < 0) {
            PyErr_NoMemory();
            goto done;
        }
        if (column->kind == KIND_TEXT || column->kind == KIND_RAW) {
            int64_t start = 0;
            buffer_append(&column->values, &start, 8);
        }
    }
    /* Object by object, every element of it: the object is read from memory once. */
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *object = PyList_GET_ITEM(objects, i);
        for (Py_ssize_t c = 0; c < width; c++) {
            if (gather_one(&columns[c], object, i) < 0) {
                goto done;
            }
        }
    }
    result = PyList_New(width);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t c = 0; c < width; c++) {
        Gathered *column = &columns[c];
        PyObject *validity = column->nulls ? bytes_of(column->validity, bitmap_size) : (Py_INCREF(Py_None), Py_None);
        PyObject *item = validity == NULL ? NULL
                                          : Py_BuildValue("(NNNn)", bytes_of(column->values.data, column->values.size),
                                                          bytes_of(column->data.data, column->data.size), validity,
                                                          column->nulls);
        if (item == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, c, item);
    }
done:
    for (Py_ssize_t c = 0; c < width; c++) {
        PyMem_RawFree(columns[c].values.data);
        PyMem_RawFree(columns[c].data.data);
        PyMem_RawFree(columns[c].validity);
    }
    PyMem_RawFree(columns);
    return result;
}

static const char HEX[] = "0123456789abcdef";

static void to_hex(const unsigned char *digest, char *out) {
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = HEX[digest[i] >> 4];
        out[2 * i + 1] = HEX[digest[i] & 15];
    }
}

static PyObject *hmac_sha256_hex(PyObject *module, PyObject *args) {
    Py_buffer ipad, opad, prefix, offsets, data;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*n", &ipad, &opad, &prefix, &offsets, &data, &count)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (ipad.len != SHA256_CBLOCK || opad.len != SHA256_CBLOCK || count < 0 ||
        offsets.len < (Py_ssize_t)((count + 1) * 8)) {
        PyErr_SetString(PyExc_ValueError, "hmac_sha256_hex: padded keys of 64 bytes and count + 1 offsets");
        goto done;
    }
    const int64_t *ends = offsets.buf;
    if (count && (ends[0] < 0 || ends[count] > data.len)) {
        PyErr_SetString(PyExc_ValueError, "hmac_sha256_hex: offsets outside the data");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, count * 64);
    if (result == NULL) {
        goto done;
    }
    char *out = PyBytes_AS_STRING(result);
    SHA256_CTX inner_start, outer_start;
    SHA256_Init(&inner_start);
    SHA256_Update(&inner_start, ipad.buf, SHA256_CBLOCK);
    SHA256_Update(&inner_start, prefix.buf, (size_t)prefix.len);
    SHA256_Init(&outer_start);
    SHA256_Update(&outer_start, opad.buf, SHA256_CBLOCK);
    const unsigned char *text = data.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned char digest[SHA256_DIGEST_LENGTH];
        SHA256_CTX context = inner_start;
        SHA256_Update(&context, text + ends[i], (size_t)(ends[i + 1] - ends[i]));
        SHA256_Final(digest, &context);
        context = outer_start;
        SHA256_Update(&context, digest, SHA256_DIGEST_LENGTH);
        SHA256_Final(digest, &context);
        to_hex(digest, out + 64 * i);
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&ipad);
    PyBuffer_Release(&opad);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    return result;
}

/* One column of sha256_rows_hex: its Arrow buffers, and floats already spelt as text. */
typedef struct {
    int kind;
    Py_buffer validity, offsets, data;
    int has_validity, has_offsets;
    Py_ssize_t offset; /* the Arrow array's offset into its buffers */
    Buffer float_text;
    int64_t *float_ends;
} Column;

static int is_valid(const Column *column, Py_ssize_t row) {
    if (!column->has_validity) {
        return 1;
    }
    Py_ssize_t bit = row + column->offset;
    return (((const uint8_t *)column->validity.buf)[bit / 8] >> (bit % 8)) & 1;
}

static void release_columns(Column *columns, Py_ssize_t count) {
    for (Py_ssize_t c = 0; c < count; c++) {
        if (columns[c].has_validity) {
            PyBuffer_Release(&columns[c].validity);
        }
        if (columns[c].has_offsets) {
            PyBuffer_Release(&columns[c].offsets);
        }
        if (columns[c].data.obj != NULL) {
            PyBuffer_Release(&columns[c].data);
        }
        PyMem_RawFree(columns[c].float_text.data);
        PyMem_RawFree(columns[c].float_ends);
    }
    PyMem_RawFree(columns);
}

/* The repr of recently spelt doubles, by bit pattern: measured values repeat (a heart rate of 72,
 * a temperature of 37.1), and the spelling is the one step of a fact id that needs the GIL. */
#define FLOAT_CACHE_SIZE 4096
#define FLOAT_TEXT_MAX 32 /* the longest repr, "-1.7976931348623157e+308", is 24 */

typedef struct {
    uint64_t bits;
    int size; /* 0: empty */
    char text[FLOAT_TEXT_MAX];
} FloatText;

/* Spell every float of a column as Python's repr does (needs the GIL). */
static int spell_floats(Column *column, Py_ssize_t count) {
    const double *numbers = column->data.buf;
    FloatText *cache = PyMem_RawCalloc(FLOAT_CACHE_SIZE, sizeof(FloatText));
    column->float_ends = PyMem_RawMalloc(sizeof(int64_t) * (size_t)(count + 1));
    if (cache == NULL || column->float_ends == NULL) {
        PyMem_RawFree(cache);
        PyErr_NoMemory();
        return -1;
    }
    column->float_ends[0] = 0;
    for (Py_ssize_t row = 0; row < count; row++) {
        if (is_valid(column, row)) {
            double number = numbers[row + column->offset];
            uint64_t bits;
            memcpy(&bits, &number, 8);
            FloatText *slot = &cache[(bits * 0x9E3779B97F4A7C15ULL) >> 52];
            if (slot->size == 0 || slot->bits != bits) {
                char *text = PyOS_double_to_string(number, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
                if (text == NULL) {
                    PyMem_RawFree(cache);
                    return -1;
                }
                size_t size = strlen(text);
                if (size == 0 || size >= FLOAT_TEXT_MAX) { /* cannot happen for a double; never cache it */
                    PyMem_Free(text);
                    PyMem_RawFree(cache);
                    PyErr_SetString(PyExc_ValueError, "sha256_rows_hex: unexpected float text");
                    return -1;
                }
                memcpy(slot->text, text, size);
                slot->size = (int)size;
                slot->bits = bits;
                PyMem_Free(text);
            }
            if (buffer_append(&column->float_text, slot->text, (size_t)slot->size) < 0) {
                PyMem_RawFree(cache);
                PyErr_NoMemory();
                return -1;
            }
        }
        column->float_ends[row + 1] = (int64_t)column->float_text.size;
    }
    PyMem_RawFree(cache);
    return 0;
}

static PyObject *sha256_rows_hex(PyObject *module, PyObject *args) {
    PyObject *specs;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &specs, &count)) {
        return NULL;
    }
    Py_ssize_t width = PyList_GET_SIZE(specs);
    Column *columns = PyMem_RawCalloc((size_t)(width ? width : 1), sizeof(Column));
    if (columns == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    Buffer message = {0};
    for (Py_ssize_t c = 0; c < width; c++) {
        /* (kind, validity or None, offsets or None, data, offset) */
        PyObject *spec = PyList_GET_ITEM(specs, c);
        PyObject *validity, *offsets, *data;
        Column *column = &columns[c];
        if (!PyArg_ParseTuple(spec, "iOOOn", &column->kind, &validity, &offsets, &data, &column->offset)) {
            goto done;
        }
        if (PyObject_GetBuffer(data, &column->data, PyBUF_SIMPLE) < 0) {
            goto done;
        }
        if (validity != Py_None) {
            if (PyObject_GetBuffer(validity, &column->validity, PyBUF_SIMPLE) < 0) {
                goto done;
            }
            column->has_validity = 1;
            if (column->validity.len * 8 < count + column->offset) {
                PyErr_SetString(PyExc_ValueError, "sha256_rows_hex: validity bitmap too short");
                goto done;
            }
        }
        if (column->kind == COLUMN_TEXT) {
            if (offsets == Py_None || PyObject_GetBuffer(offsets, &column->offsets, PyBUF_SIMPLE) < 0) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_ValueError, "sha256_rows_hex: a text column needs offsets");
                }
                goto done;
            }
            column->has_offsets = 1;
            const int64_t *ends = column->offsets.buf;
            if (column->offsets.len < (count + column->offset + 1) * 8 ||
                (count && ends[count + column->offset] > column->data.len)) {
                PyErr_SetString(PyExc_ValueError, "sha256_rows_hex: offsets outside the data");
                goto done;
            }
        } else if (column->kind == COLUMN_FLOAT || column->kind == COLUMN_INT) {
            if (column->data.len < (count + column->offset) * 8) {
                PyErr_SetString(PyExc_ValueError, "sha256_rows_hex: number column too short");
                goto done;
            }
            if (column->kind == COLUMN_FLOAT && spell_floats(column, count) < 0) {
                goto done;
            }
        } else {
            PyErr_SetString(PyExc_ValueError, "sha256_rows_hex: unknown column kind");
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(NULL, count * 64);
    if (result == NULL) {
        goto done;
    }
    char *out = PyBytes_AS_STRING(result);
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t row = 0; row < count && !failed; row++) {
        message.size = 0;
        for (Py_ssize_t c = 0; c < width && !failed; c++) {
            const Column *column = &columns[c];
            if (c > 0) {
                failed |= buffer_append(&message, "\x1f", 1);
            }
            if (!is_valid(column, row)) {
                failed |= buffer_append(&message, "None", 4);
            } else if (column->kind == COLUMN_TEXT) {
                const int64_t *ends = column->offsets.buf;
                Py_ssize_t at = row + column->offset;
                failed |= buffer_append(&message, (const char *)column->data.buf + ends[at], (size_t)(ends[at + 1] - ends[at]));
            } else if (column->kind == COLUMN_FLOAT) {
                const int64_t *ends = column->float_ends;
                failed |= buffer_append(&message, column->float_text.data + ends[row], (size_t)(ends[row + 1] - ends[row]));
            } else {
                char digits[24];
                int size = snprintf(digits, sizeof digits, "%lld",
                                    (long long)((const int64_t *)column->data.buf)[row + column->offset]);
                failed |= buffer_append(&message, digits, (size_t)size);
            }
        }
        /* The low-level calls: OpenSSL 3's one-shot SHA256() looks the algorithm up on every call. */
        unsigned char digest[SHA256_DIGEST_LENGTH];
        SHA256_CTX context;
        SHA256_Init(&context);
        SHA256_Update(&context, message.data ? message.data : "", message.size);
        SHA256_Final(digest, &context);
        to_hex(digest, out + 64 * row);
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        Py_CLEAR(result);
        PyErr_NoMemory();
    }
done:
    PyMem_RawFree(message.data);
    release_columns(columns, width);
    return result;
}

static PyMethodDef METHODS[] = {
    {"gather", gather, METH_VARARGS,
     "gather(objects, [(path, kind, sentinel), ...]) -> [(values, data, validity or None, null count), ...]"},
    {"hmac_sha256_hex", hmac_sha256_hex, METH_VARARGS,
     "hmac_sha256_hex(ipad, opad, prefix, offsets, data, count) -> count * 64 hex bytes"},
    {"sha256_rows_hex", sha256_rows_hex, METH_VARARGS, "sha256_rows_hex(columns, count) -> count * 64 hex bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "_native", "Native helpers of bulk ingest (see vitalops.ingest.native).", -1, METHODS,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *module = PyModule_Create(&MODULE);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "TEXT", KIND_TEXT) < 0 || PyModule_AddIntConstant(module, "RAW", KIND_RAW) < 0 ||
        PyModule_AddIntConstant(module, "FLOAT", KIND_FLOAT) < 0 ||
        PyModule_AddIntConstant(module, "LENGTH", KIND_LENGTH) < 0 ||
        PyModule_AddIntConstant(module, "IS", KIND_IS) < 0 ||
        PyModule_AddIntConstant(module, "COLUMN_TEXT", COLUMN_TEXT) < 0 ||
        PyModule_AddIntConstant(module, "COLUMN_FLOAT", COLUMN_FLOAT) < 0 ||
        PyModule_AddIntConstant(module, "COLUMN_INT", COLUMN_INT) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
