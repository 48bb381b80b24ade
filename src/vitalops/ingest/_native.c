/*
 * The optional native part of bulk ingest. ``vitalops.ingest.native`` is its Python face; each
 * function has a pure-Python twin that tests hold it to (the hashing twins are in native.py, the
 * scanner's is the msgspec reader of columnar_observations.py):
 *
 *   hmac_sha256_hex(ipad, opad, prefix, offsets, data, count) - pseudonyms of a text column,
 *       HMAC-SHA256 (RFC 2104) with the padded keys given, hex;
 *   scan_observations(lines) - the elements of Observation NDJSON lines the fast
 *       path reads, as the buffers of Arrow columns, straight from the bytes (observation_scan.c);
 *   content_versions(lines) - the version of resources without version metadata, a hash of
 *       their content as orjson spells it with sorted keys (observation_scan.c);
 *   sha256_rows_hex(columns, count) - fact ids: SHA-256 (hex) of each row's fields as text,
 *       joined by 0x1f, a float spelt as Python's repr and a null as "None".
 *
 * Hashing runs on OpenSSL's libcrypto (the one Python's hashlib uses) with the GIL released.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_CTX: a context copied per message costs nothing */
#include "native_buffer.h"
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

enum { COLUMN_TEXT = 0, COLUMN_FLOAT = 1, COLUMN_INT = 2, COLUMN_TEXT32 = 3 };

/* Where text ``row`` of an Arrow offsets buffer starts and ends: 64-bit offsets (large_string)
 * or 32-bit ones (string). */
static inline void text_bounds(const void *offsets, int wide, Py_ssize_t row, int64_t *start, int64_t *end) {
    if (wide) {
        *start = ((const int64_t *)offsets)[row];
        *end = ((const int64_t *)offsets)[row + 1];
    } else {
        *start = ((const int32_t *)offsets)[row];
        *end = ((const int32_t *)offsets)[row + 1];
    }
}

/* Whether ``count`` texts from ``first`` on, as an Arrow offsets buffer of ``offsets_size`` bytes
 * describes them, lie inside ``data_size`` bytes of data; a ValueError naming ``who`` if not. */
static int texts_inside(const void *offsets, Py_ssize_t offsets_size, int wide, Py_ssize_t first, Py_ssize_t count,
                        Py_ssize_t data_size, const char *who) {
    if (offsets_size < (first + count + 1) * (wide ? 8 : 4)) {
        PyErr_Format(PyExc_ValueError, "%s: fewer offsets than texts", who);
        return -1;
    }
    for (Py_ssize_t row = first; row < first + count; row++) {
        int64_t start, end;
        text_bounds(offsets, wide, row, &start, &end);
        if (start < 0 || end < start || end > data_size) {
            PyErr_Format(PyExc_ValueError, "%s: offsets outside the data", who);
            return -1;
        }
    }
    return 0;
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
    int wide;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*np", &ipad, &opad, &prefix, &offsets, &data, &count, &wide)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (ipad.len != SHA256_CBLOCK || opad.len != SHA256_CBLOCK || count < 0) {
        PyErr_SetString(PyExc_ValueError, "hmac_sha256_hex: padded keys of 64 bytes and a count");
        goto done;
    }
    if (texts_inside(offsets.buf, offsets.len, wide, 0, count, data.len, "hmac_sha256_hex") < 0) {
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
        int64_t start, end;
        text_bounds(offsets.buf, wide, i, &start, &end);
        unsigned char digest[SHA256_DIGEST_LENGTH];
        SHA256_CTX context = inner_start;
        SHA256_Update(&context, text + start, (size_t)(end - start));
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
        if (column->kind == COLUMN_TEXT || column->kind == COLUMN_TEXT32) {
            if (offsets == Py_None || PyObject_GetBuffer(offsets, &column->offsets, PyBUF_SIMPLE) < 0) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_ValueError, "sha256_rows_hex: a text column needs offsets");
                }
                goto done;
            }
            column->has_offsets = 1;
            if (texts_inside(column->offsets.buf, column->offsets.len, column->kind == COLUMN_TEXT, column->offset,
                             count, column->data.len, "sha256_rows_hex") < 0) {
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
            } else if (column->kind == COLUMN_TEXT || column->kind == COLUMN_TEXT32) {
                int64_t start, end;
                text_bounds(column->offsets.buf, column->kind == COLUMN_TEXT, row + column->offset, &start, &end);
                failed |= buffer_append(&message, (const char *)column->data.buf + start, (size_t)(end - start));
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

PyObject *scan_observations(PyObject *module, PyObject *args); /* observation_scan.c */
PyObject *content_versions(PyObject *module, PyObject *args);  /* observation_scan.c */
int observation_scan_init(void);

static PyMethodDef METHODS[] = {
    {"scan_observations", scan_observations, METH_VARARGS,
     "scan_observations(lines) -> (taken flags, block columns, component columns)"},
    {"content_versions", content_versions, METH_VARARGS,
     "content_versions(lines) -> the content hash (32 hex digits) of each line, or None"},
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
    if (observation_scan_init() < 0) {
        return PyErr_NoMemory();
    }
    PyObject *module = PyModule_Create(&MODULE);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "COLUMN_TEXT", COLUMN_TEXT) < 0 ||
        PyModule_AddIntConstant(module, "COLUMN_FLOAT", COLUMN_FLOAT) < 0 ||
        PyModule_AddIntConstant(module, "COLUMN_INT", COLUMN_INT) < 0 ||
        PyModule_AddIntConstant(module, "COLUMN_TEXT32", COLUMN_TEXT32) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
