/* A growable byte buffer for the C part of bulk ingest (see native.py). Allocated with the raw
 * allocator, which needs no GIL. */
#ifndef VITALOPS_NATIVE_BUFFER_H
#define VITALOPS_NATIVE_BUFFER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *data;
    size_t size;
    size_t capacity;
} Buffer;

static inline int buffer_reserve(Buffer *buffer, size_t more) {
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

static inline int buffer_append(Buffer *buffer, const void *bytes, size_t size) {
    if (buffer_reserve(buffer, size) < 0) {
        return -1;
    }
    if (size) {
        memcpy(buffer->data + buffer->size, bytes, size);
    }
    buffer->size += size;
    return 0;
}

static inline void buffer_free(Buffer *buffer) {
    PyMem_RawFree(buffer->data);
    buffer->data = NULL;
    buffer->size = buffer->capacity = 0;
}

/* A bytes object with a copy of the buffer (needs the GIL). */
static inline PyObject *buffer_bytes(const Buffer *buffer) {
    return PyBytes_FromStringAndSize(buffer->size ? buffer->data : "", (Py_ssize_t)buffer->size);
}

#endif
