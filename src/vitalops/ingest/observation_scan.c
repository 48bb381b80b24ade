/*
 * scan_observations(lines): the elements of FHIR Observation NDJSON lines that the
 * fast path reads, straight from the bytes into Arrow column buffers, with the GIL released.
 *
 * It gives exactly the columns ``native.gather`` gives over lines msgspec decoded into the types of
 * ``columnar_observations`` (the same requests, in the same order), and it is sound rather than
 * complete: a line is marked taken only when it is strict JSON (RFC 8259: grammar, UTF-8, escapes,
 * surrogate pairs, numbers that are finite doubles, depth) that orjson reads the same way, and its
 * elements have the JSON types those structs declare. Anything else, and anything unusual (a key
 * given twice, an escape inside an element read as text, a key spelt with an escape, an integer
 * too long to be exact), is declined: the per-resource path reads that line.
 */
#define _GNU_SOURCE 1 /* strtod_l */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_CTX, as in _native.c */
#include "native_buffer.h"
#include <openssl/sha.h>

#include <locale.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#define DECLINE (-1)
#define MAX_DEPTH_JSON 64
#define MAX_COMPONENTS 64

enum { OUT_TEXT = 0, OUT_RAW = 1, OUT_FLOAT = 2, OUT_LENGTH = 3, OUT_IS = 4 };

static locale_t c_locale;

int observation_scan_init(void) {
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    return c_locale == (locale_t)0 ? -1 : 0;
}

/* ---- strict JSON -------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    int depth;
} Cursor;

typedef struct {
    const unsigned char *start;
    size_t size;
    int state; /* 0 absent, 1 null, 2 present */
} Span;

static inline void skip_space(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) {
        c->p++;
    }
}

static inline int hex_value(const unsigned char *p, unsigned *out) {
    unsigned value = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char h = p[i];
        value <<= 4;
        if (h >= '0' && h <= '9') {
            value |= (unsigned)(h - '0');
        } else if (h >= 'a' && h <= 'f') {
            value |= (unsigned)(h - 'a' + 10);
        } else if (h >= 'A' && h <= 'F') {
            value |= (unsigned)(h - 'A' + 10);
        } else {
            return DECLINE;
        }
    }
    *out = value;
    return 0;
}

/* One UTF-8 sequence of 2 to 4 bytes at p (its first byte >= 0x80): its length, or DECLINE for an
 * overlong form, a surrogate, a code point beyond U+10FFFF or a truncated sequence. */
static inline int utf8_sequence(const unsigned char *p, const unsigned char *end) {
    unsigned char b = p[0];
    if (b >= 0xC2 && b <= 0xDF) {
        return (end - p >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : DECLINE;
    }
    if (b >= 0xE0 && b <= 0xEF) {
        if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) {
            return DECLINE;
        }
        if ((b == 0xE0 && p[1] < 0xA0) || (b == 0xED && p[1] >= 0xA0)) {
            return DECLINE;
        }
        return 3;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) {
            return DECLINE;
        }
        if ((b == 0xF0 && p[1] < 0x90) || (b == 0xF4 && p[1] >= 0x90)) {
            return DECLINE;
        }
        return 4;
    }
    return DECLINE;
}

/* The bytes of ``v`` (8 bytes of a string, the first in the lowest bits) that need a look: a
 * quote, a backslash, a control character or a byte of a multi-byte UTF-8 sequence, each flagged
 * by its high bit (SWAR: eight bytes tested in a few instructions). A flag can be wrong only above
 * a right one, so the lowest flag is always the first byte to look at. */
static inline uint64_t needs_look(uint64_t v) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = v ^ (ones * '"'), backslash = v ^ (ones * '\\');
    uint64_t special = ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | ((v - ones * 0x20) & ~v) | v;
    return special & highs;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
#define SWAR_STRINGS 1
#else
#define SWAR_STRINGS 0
#endif

/* A string at the cursor (on its opening quote): its content between the quotes, and whether it
 * holds an escape. */
static int scan_string(Cursor *c, Span *span, int *escaped) {
    const unsigned char *p = c->p + 1, *end = c->end;
    const unsigned char *start = p;
    *escaped = 0;
    while (p < end) {
#if SWAR_STRINGS
        while (end - p >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            uint64_t flags = needs_look(v);
            if (flags) {
                p += __builtin_ctzll(flags) >> 3;
                break;
            }
            p += 8;
        }
        if (p >= end) {
            break;
        }
#endif
        unsigned char b = *p;
        if (b == '"') {
            span->start = start;
            span->size = (size_t)(p - start);
            span->state = 2;
            c->p = p + 1;
            return 0;
        }
        if (b == '\\') {
            *escaped = 1;
            if (end - p < 2) {
                return DECLINE;
            }
            unsigned char e = p[1];
            if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
                p += 2;
                continue;
            }
            if (e != 'u' || end - p < 6) {
                return DECLINE;
            }
            unsigned unit;
            if (hex_value(p + 2, &unit) < 0) {
                return DECLINE;
            }
            p += 6;
            if (unit >= 0xDC00 && unit <= 0xDFFF) {
                return DECLINE; /* a low surrogate alone */
            }
            if (unit >= 0xD800 && unit <= 0xDBFF) {
                unsigned low;
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex_value(p + 2, &low) < 0 || low < 0xDC00 ||
                    low > 0xDFFF) {
                    return DECLINE;
                }
                p += 6;
            }
            continue;
        }
        if (b < 0x20) {
            return DECLINE;
        }
        if (b < 0x80) {
            p++;
            continue;
        }
        int size = utf8_sequence(p, end);
        if (size < 0) {
            return DECLINE;
        }
        p += size;
    }
    return DECLINE;
}

static inline int is_digit(unsigned char b) {
    return b >= '0' && b <= '9';
}

/* A number at the cursor: whether it is an integer literal, its integer digits, and, when
 * ``value`` is given, its value (a double, as orjson reads it). A number orjson refuses (one that
 * is infinite as a double) is declined. */
static int scan_number(Cursor *c, double *value, int *integer, size_t *integer_digits) {
    const unsigned char *p = c->p, *end = c->end, *start = p;
    if (p < end && *p == '-') {
        p++;
    }
    if (p >= end) {
        return DECLINE;
    }
    const unsigned char *digits = p;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && is_digit(*p)) {
            p++;
        }
    } else {
        return DECLINE;
    }
    *integer_digits = (size_t)(p - digits);
    *integer = 1;
    int exponent = 0;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p)) {
            return DECLINE;
        }
        while (p < end && is_digit(*p)) {
            p++;
        }
        *integer = 0;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }
        if (p >= end || !is_digit(*p)) {
            return DECLINE;
        }
        while (p < end && is_digit(*p)) {
            p++;
        }
        *integer = 0;
        exponent = 1;
    }
    size_t size = (size_t)(p - start);
    if (size >= 64) {
        return DECLINE; /* exact, but longer than any number a resource needs */
    }
    if (value != NULL || exponent || *integer_digits > 300) {
        char text[64];
        memcpy(text, start, size);
        text[size] = '\0';
        double number = strtod_l(text, NULL, c_locale);
        if (!isfinite(number)) {
            return DECLINE;
        }
        if (value != NULL) {
            *value = number;
        }
    }
    c->p = p;
    return 0;
}

/* Containers. ``open_container`` steps into ``[`` or ``{`` (1), or past an empty one (0);
 * ``read_key`` reads a member's key and its colon; ``next_item`` steps past the comma after an
 * item (1) or past the closing bracket (0). Each returns DECLINE for anything else. */
static int open_container(Cursor *c, unsigned char open, unsigned char close) {
    if (c->p >= c->end || *c->p != open || ++c->depth > MAX_DEPTH_JSON) {
        return DECLINE;
    }
    c->p++;
    skip_space(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        c->depth--;
        return 0;
    }
    return 1;
}

static int read_key(Cursor *c, Span *key, int *escaped) {
    if (c->p >= c->end || *c->p != '"' || scan_string(c, key, escaped) < 0) {
        return DECLINE;
    }
    skip_space(c);
    if (c->p >= c->end || *c->p != ':') {
        return DECLINE;
    }
    c->p++;
    skip_space(c);
    return 0;
}

static int next_item(Cursor *c, unsigned char close) {
    skip_space(c);
    if (c->p < c->end && *c->p == ',') {
        c->p++;
        skip_space(c);
        return 1;
    }
    if (c->p < c->end && *c->p == close) {
        c->p++;
        c->depth--;
        return 0;
    }
    return DECLINE;
}

static int skip_value(Cursor *c);

static int skip_container(Cursor *c, unsigned char open, unsigned char close) {
    int more = open_container(c, open, close);
    while (more > 0) {
        Span key;
        int escaped;
        if ((close == '}' && read_key(c, &key, &escaped) < 0) || skip_value(c) < 0) {
            return DECLINE;
        }
        more = next_item(c, close);
    }
    return more;
}

static int literal(Cursor *c, const char *word, size_t size) {
    if ((size_t)(c->end - c->p) < size || memcmp(c->p, word, size) != 0) {
        return DECLINE;
    }
    c->p += size;
    return 0;
}

/* Any JSON value at the cursor, checked and passed over. */
static int skip_value(Cursor *c) {
    if (c->p >= c->end) {
        return DECLINE;
    }
    unsigned char b = *c->p;
    if (b == '"') {
        Span span;
        int escaped;
        return scan_string(c, &span, &escaped);
    }
    if (b == '{') {
        return skip_container(c, '{', '}');
    }
    if (b == '[') {
        return skip_container(c, '[', ']');
    }
    if (b == 't') {
        return literal(c, "true", 4);
    }
    if (b == 'f') {
        return literal(c, "false", 5);
    }
    if (b == 'n') {
        return literal(c, "null", 4);
    }
    int integer;
    size_t digits;
    return scan_number(c, NULL, &integer, &digits);
}

/* ---- the elements read ------------------------------------------------------------------------ */

/* A string or null read as text (``str | None``): an escape inside it is declined. */
static int read_text(Cursor *c, Span *span) {
    if (c->p < c->end && *c->p == '"') {
        int escaped;
        if (scan_string(c, span, &escaped) < 0 || escaped) {
            return DECLINE;
        }
        return 0;
    }
    if (literal(c, "null", 4) == 0) {
        span->state = 1;
        return 0;
    }
    return DECLINE;
}

static int read_raw(Cursor *c, Span *span) {
    const unsigned char *start = c->p;
    if (skip_value(c) < 0) {
        return DECLINE;
    }
    span->start = start;
    span->size = (size_t)(c->p - start);
    span->state = 2;
    return 0;
}

typedef struct {
    Span code, unit;
    double value;
    int value_state; /* 0 absent, 1 null, 2 a number */
    int present;
} Quantity;

/* Walks the members of an object at the cursor: ``member`` is called on each key (its cursor on
 * the value) and returns 0 when it read the value, 1 to have it passed over, DECLINE to decline. */
typedef int (*Member)(Cursor *c, const unsigned char *key, size_t size, void *target, unsigned *seen);

static int read_object(Cursor *c, Member member, void *target) {
    unsigned seen = 0;
    int more = open_container(c, '{', '}');
    while (more > 0) {
        Span key;
        int escaped;
        if (read_key(c, &key, &escaped) < 0 || escaped) {
            return DECLINE; /* a key spelt with an escape might be one of ours */
        }
        int read = member(c, key.start, key.size, target, &seen);
        if (read < 0 || (read == 1 && skip_value(c) < 0)) {
            return DECLINE;
        }
        more = next_item(c, '}');
    }
    return more;
}

#define KEY(name) (size == sizeof(name) - 1 && memcmp(key, name, sizeof(name) - 1) == 0)
#define ONCE(bit)              \
    do {                       \
        if (*seen & (1u << (bit))) { \
            return DECLINE;    \
        }                      \
        *seen |= 1u << (bit);  \
    } while (0)

static int quantity_member(Cursor *c, const unsigned char *key, size_t size, void *target, unsigned *seen) {
    Quantity *q = target;
    if (KEY("value")) {
        ONCE(0);
        if (literal(c, "null", 4) == 0) {
            q->value_state = 1;
            return 0;
        }
        if (c->p >= c->end || !(*c->p == '-' || is_digit(*c->p))) {
            return DECLINE; /* msgspec reads ``float | None`` */
        }
        int integer;
        size_t digits;
        if (scan_number(c, &q->value, &integer, &digits) < 0) {
            return DECLINE;
        }
        if (integer) {
            if (digits > 18) {
                return DECLINE; /* beyond what an integer and a double agree on */
            }
            if (q->value == 0.0) {
                q->value = 0.0; /* "-0" is the integer 0 */
            }
        }
        q->value_state = 2;
        return 0;
    }
    if (KEY("unit")) {
        ONCE(1);
        return read_text(c, &q->unit);
    }
    if (KEY("code")) {
        ONCE(2);
        return read_text(c, &q->code);
    }
    return 1;
}

static int read_quantity(Cursor *c, Quantity *q) {
    memset(q, 0, sizeof *q);
    q->present = 1;
    return read_object(c, quantity_member, q);
}

typedef struct {
    Span code;
    Quantity quantity; /* present 0: absent or null */
} Component;

static int component_member(Cursor *c, const unsigned char *key, size_t size, void *target, unsigned *seen) {
    Component *component = target;
    if (KEY("code")) {
        ONCE(0);
        return read_raw(c, &component->code);
    }
    if (KEY("valueQuantity")) {
        ONCE(1);
        if (literal(c, "null", 4) == 0) {
            return 0;
        }
        return read_quantity(c, &component->quantity);
    }
    return 1;
}

typedef struct {
    Span resource_type, id, status, subject_ref, encounter_ref, effective, version_id, last_updated, issued;
    Span code, tag, category, context;
    int has_encounter;
    Quantity quantity;
    Py_ssize_t components;
    Component component[MAX_COMPONENTS];
} Line;

static int reference_member(Cursor *c, const unsigned char *key, size_t size, void *target, unsigned *seen) {
    if (KEY("reference")) {
        ONCE(0);
        return read_text(c, target);
    }
    return 1;
}

static int meta_member(Cursor *c, const unsigned char *key, size_t size, void *target, unsigned *seen) {
    Line *line = target;
    if (KEY("versionId")) {
        ONCE(0);
        return read_text(c, &line->version_id);
    }
    if (KEY("lastUpdated")) {
        ONCE(1);
        return read_text(c, &line->last_updated);
    }
    if (KEY("tag")) {
        ONCE(2);
        return read_raw(c, &line->tag);
    }
    return 1;
}

static int read_components(Cursor *c, Line *line) {
    int more = open_container(c, '[', ']');
    while (more > 0) {
        if (line->components == MAX_COMPONENTS) {
            return DECLINE;
        }
        Component *component = &line->component[line->components++];
        memset(component, 0, sizeof *component);
        if (read_object(c, component_member, component) < 0) {
            return DECLINE;
        }
        more = next_item(c, ']');
    }
    return more;
}

static int observation_member(Cursor *c, const unsigned char *key, size_t size, void *target, unsigned *seen) {
    Line *line = target;
    switch (size) {
    case 2:
        if (KEY("id")) {
            ONCE(0);
            return read_text(c, &line->id);
        }
        break;
    case 4:
        if (KEY("meta")) {
            ONCE(1);
            return read_object(c, meta_member, line);
        }
        if (KEY("code")) {
            ONCE(2);
            return read_raw(c, &line->code);
        }
        break;
    case 6:
        if (KEY("status")) {
            ONCE(3);
            return read_text(c, &line->status);
        }
        if (KEY("issued")) {
            ONCE(4);
            return read_text(c, &line->issued);
        }
        break;
    case 7:
        if (KEY("subject")) {
            ONCE(5);
            return read_object(c, reference_member, &line->subject_ref);
        }
        if (KEY("context")) {
            ONCE(6);
            return read_raw(c, &line->context);
        }
        break;
    case 8:
        if (KEY("category")) {
            ONCE(7);
            return read_raw(c, &line->category);
        }
        break;
    case 9:
        if (KEY("encounter")) {
            ONCE(8);
            line->has_encounter = 1;
            return read_object(c, reference_member, &line->encounter_ref);
        }
        if (KEY("component")) {
            ONCE(9);
            return read_components(c, line);
        }
        break;
    case 12:
        if (KEY("resourceType")) {
            ONCE(10);
            return read_text(c, &line->resource_type);
        }
        break;
    case 13:
        if (KEY("valueQuantity")) {
            ONCE(11);
            return read_quantity(c, &line->quantity);
        }
        break;
    case 17:
        if (KEY("effectiveDateTime")) {
            ONCE(12);
            return read_text(c, &line->effective);
        }
        break;
    }
    return 1;
}

static int scan_line(const unsigned char *start, const unsigned char *end, Line *line) {
    memset(line, 0, offsetof(Line, component));
    Cursor c = {start, end, 0};
    skip_space(&c);
    if (read_object(&c, observation_member, line) < 0) {
        return DECLINE;
    }
    skip_space(&c);
    return c.p == c.end ? 0 : DECLINE;
}

/* ---- the columns ------------------------------------------------------------------------------ */

typedef struct {
    int kind;
    Buffer values, data, valid; /* ``valid``: a byte per row, packed into a bitmap at the end */
    Py_ssize_t nulls;
} Out;

/* Text and raw columns have 32-bit offsets (Arrow's string and binary): a column holds at most
 * the bytes of its lines, and a block of lines is refused beyond 2 GiB. */
typedef int32_t Offset;

static int out_start(Out *out, int kind, Py_ssize_t rows) {
    out->kind = kind;
    size_t width = kind == OUT_IS ? 1 : (kind == OUT_TEXT || kind == OUT_RAW) ? sizeof(Offset) : 8;
    if (buffer_reserve(&out->values, ((size_t)rows + 1) * width) < 0 || buffer_reserve(&out->valid, (size_t)rows) < 0) {
        return -1;
    }
    if (kind == OUT_TEXT || kind == OUT_RAW) {
        Offset zero = 0;
        buffer_append(&out->values, &zero, sizeof zero);
    }
    return 0;
}

/* A text or raw entry (``span`` present), or a null (absent or null: a raw entry is then empty). */
static int out_span(Out *out, const Span *span) {
    int present = span->state == 2 || (out->kind == OUT_RAW && span->state == 1);
    int failed = 0;
    if (present) {
        failed |= buffer_append(&out->data, span->start, span->size);
    }
    Offset end = (Offset)out->data.size;
    failed |= buffer_append(&out->values, &end, sizeof end);
    char valid = (char)(present || out->kind == OUT_RAW);
    out->nulls += !valid;
    failed |= buffer_append(&out->valid, &valid, 1);
    return failed;
}

static int out_number(Out *out, double value, int present) {
    double number = present ? value : 0.0;
    char valid = (char)present;
    out->nulls += !present;
    return buffer_append(&out->values, &number, 8) | buffer_append(&out->valid, &valid, 1);
}

static int out_integer(Out *out, int64_t value) {
    char valid = 1;
    return buffer_append(&out->values, &value, 8) | buffer_append(&out->valid, &valid, 1);
}

static int out_flag(Out *out, int flag) {
    char value = (char)(flag != 0), valid = 1;
    return buffer_append(&out->values, &value, 1) | buffer_append(&out->valid, &valid, 1);
}

/* The columns ``columnar_observations._BLOCK_COLUMNS`` names, in its order. */
enum {
    B_ID, B_STATUS, B_SUBJECT, B_ENCOUNTER, B_EFFECTIVE, B_VERSION, B_UPDATED, B_ISSUED, B_TYPE, B_VALUE,
    B_UNIT_CODE, B_UNIT, B_CODE, B_TAG, B_CATEGORY, B_NO_QUANTITY, B_NO_ENCOUNTER, B_CONTEXT, B_COMPONENTS,
    BLOCK_COLUMNS
};
static const int BLOCK_KINDS[BLOCK_COLUMNS] = {
    OUT_TEXT, OUT_TEXT, OUT_TEXT, OUT_TEXT, OUT_TEXT, OUT_TEXT, OUT_TEXT, OUT_TEXT, OUT_TEXT, OUT_FLOAT,
    OUT_TEXT, OUT_TEXT, OUT_RAW, OUT_RAW, OUT_RAW, OUT_IS, OUT_IS, OUT_LENGTH, OUT_LENGTH,
};
/* The columns ``columnar_observations._COMPONENT_COLUMNS`` names, in its order. */
enum { C_CODE, C_VALUE, C_UNIT_CODE, C_UNIT, C_NO_QUANTITY, COMPONENT_COLUMNS };
static const int COMPONENT_KINDS[COMPONENT_COLUMNS] = {OUT_RAW, OUT_FLOAT, OUT_TEXT, OUT_TEXT, OUT_IS};

static int emit_line(Out *block, Out *parts, const Line *l) {
    static const Span none = {NULL, 0, 0};
    const Quantity *q = &l->quantity;
    int failed = 0;
    failed |= out_span(&block[B_ID], &l->id);
    failed |= out_span(&block[B_STATUS], &l->status);
    failed |= out_span(&block[B_SUBJECT], &l->subject_ref);
    failed |= out_span(&block[B_ENCOUNTER], &l->encounter_ref);
    failed |= out_span(&block[B_EFFECTIVE], &l->effective);
    failed |= out_span(&block[B_VERSION], &l->version_id);
    failed |= out_span(&block[B_UPDATED], &l->last_updated);
    failed |= out_span(&block[B_ISSUED], &l->issued);
    failed |= out_span(&block[B_TYPE], &l->resource_type);
    failed |= out_number(&block[B_VALUE], q->value, q->value_state == 2);
    failed |= out_span(&block[B_UNIT_CODE], q->present ? &q->code : &none);
    failed |= out_span(&block[B_UNIT], q->present ? &q->unit : &none);
    failed |= out_span(&block[B_CODE], &l->code);
    failed |= out_span(&block[B_TAG], &l->tag);
    failed |= out_span(&block[B_CATEGORY], &l->category);
    failed |= out_flag(&block[B_NO_QUANTITY], !q->present);
    failed |= out_flag(&block[B_NO_ENCOUNTER], !l->has_encounter);
    failed |= out_integer(&block[B_CONTEXT], (int64_t)l->context.size);
    failed |= out_integer(&block[B_COMPONENTS], (int64_t)l->components);
    for (Py_ssize_t i = 0; i < l->components; i++) {
        const Component *component = &l->component[i];
        const Quantity *cq = &component->quantity;
        failed |= out_span(&parts[C_CODE], &component->code);
        failed |= out_number(&parts[C_VALUE], cq->value, cq->present && cq->value_state == 2);
        failed |= out_span(&parts[C_UNIT_CODE], cq->present ? &cq->code : &none);
        failed |= out_span(&parts[C_UNIT], cq->present ? &cq->unit : &none);
        failed |= out_flag(&parts[C_NO_QUANTITY], !cq->present);
    }
    return failed;
}

/* (values, data, validity bitmap or None, null count), as ``gather`` returns a column. */
static PyObject *out_result(Out *out, Py_ssize_t rows) {
    PyObject *validity;
    if (out->nulls) {
        size_t size = (size_t)(rows + 7) / 8;
        validity = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(size ? size : 1));
        if (validity == NULL) {
            return NULL;
        }
        unsigned char *bits = (unsigned char *)PyBytes_AS_STRING(validity);
        memset(bits, 0, size ? size : 1);
        for (Py_ssize_t i = 0; i < rows; i++) {
            if (out->valid.data[i]) {
                bits[i / 8] |= (unsigned char)(1u << (i % 8));
            }
        }
    } else {
        Py_INCREF(Py_None);
        validity = Py_None;
    }
    PyObject *values = buffer_bytes(&out->values), *data = buffer_bytes(&out->data);
    if (values == NULL || data == NULL) {
        Py_XDECREF(values);
        Py_XDECREF(data);
        Py_DECREF(validity);
        return NULL;
    }
    return Py_BuildValue("(NNNn)", values, data, validity, out->nulls);
}

static PyObject *out_list(Out *outs, int width, Py_ssize_t rows) {
    PyObject *list = PyList_New(width);
    if (list == NULL) {
        return NULL;
    }
    for (int i = 0; i < width; i++) {
        PyObject *item = out_result(&outs[i], rows);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

PyObject *scan_observations(PyObject *module, PyObject *args) {
    PyObject *lines;
    (void)module;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &lines)) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(lines);
    PyObject *result = NULL;
    Out block[BLOCK_COLUMNS], parts[COMPONENT_COLUMNS];
    memset(block, 0, sizeof block);
    memset(parts, 0, sizeof parts);
    Buffer taken = {0};
    Line *line = PyMem_RawMalloc(sizeof(Line));
    /* Where each line is: the list holds the bytes objects alive while the GIL is released. */
    const unsigned char **starts = PyMem_RawMalloc(sizeof(char *) * (size_t)(count + 1));
    Py_ssize_t *sizes = PyMem_RawMalloc(sizeof(Py_ssize_t) * (size_t)(count + 1));
    Py_ssize_t component_rows = 0, total = 0;
    int failed = line == NULL || starts == NULL || sizes == NULL || buffer_reserve(&taken, (size_t)count + 1);
    for (Py_ssize_t i = 0; i < count && !failed; i++) {
        PyObject *item = PyList_GET_ITEM(lines, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "scan_observations: lines must be bytes");
            goto done;
        }
        starts[i] = (const unsigned char *)PyBytes_AS_STRING(item);
        sizes[i] = PyBytes_GET_SIZE(item);
        total += sizes[i];
    }
    if (!failed && total > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "scan_observations: a block of lines over 2 GiB");
        goto done;
    }
    for (int i = 0; i < BLOCK_COLUMNS && !failed; i++) {
        failed |= out_start(&block[i], BLOCK_KINDS[i], count);
    }
    for (int i = 0; i < COMPONENT_COLUMNS && !failed; i++) {
        failed |= out_start(&parts[i], COMPONENT_KINDS[i], count / 4);
    }
    if (failed) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count && !failed; i++) {
        int ok = scan_line(starts[i], starts[i] + sizes[i], line) == 0;
        if (!ok) {
            memset(line, 0, offsetof(Line, component)); /* a declined line: nulls, no components */
        }
        char flag = (char)ok;
        failed |= buffer_append(&taken, &flag, 1);
        failed |= emit_line(block, parts, line);
        component_rows += line->components;
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject *flags = buffer_bytes(&taken);
    PyObject *block_list = flags ? out_list(block, BLOCK_COLUMNS, count) : NULL;
    PyObject *part_list = block_list ? out_list(parts, COMPONENT_COLUMNS, component_rows) : NULL;
    if (part_list != NULL) {
        result = Py_BuildValue("(NNN)", flags, block_list, part_list);
    } else {
        Py_XDECREF(flags);
        Py_XDECREF(block_list);
    }
done:
    for (int i = 0; i < BLOCK_COLUMNS; i++) {
        buffer_free(&block[i].values);
        buffer_free(&block[i].data);
        buffer_free(&block[i].valid);
    }
    for (int i = 0; i < COMPONENT_COLUMNS; i++) {
        buffer_free(&parts[i].values);
        buffer_free(&parts[i].data);
        buffer_free(&parts[i].valid);
    }
    buffer_free(&taken);
    PyMem_RawFree(line);
    PyMem_RawFree(starts);
    PyMem_RawFree(sizes);
    return result;
}

/* ---- content versions ------------------------------------------------------------------------- */

/*
 * content_versions(lines): for each line, the 32 hex digits ``extract_common.source_version``
 * gives a resource without version metadata: the start of the SHA-256 of
 * ``orjson.dumps(orjson.loads(line), option=OPT_SORT_KEYS)``, without building the Python objects.
 * The canonical text is written here only for what is certain to be spelt exactly as orjson
 * spells it (keys in ASCII without escapes and never repeated, strings without escapes, integers
 * of at most 18 digits, decimals without an exponent of at most 15 significant digits and not
 * below 1e-4); for any other line the answer is None and the caller hashes it with orjson.
 */

#define MAX_CANON_MEMBERS 64
#define CANON_STACK_COPY 2048

typedef struct {
    const unsigned char *key;
    size_t key_size;
    size_t start, size; /* of ``"key":value`` in the output */
} CanonMember;

static int canon_value(Cursor *c, Buffer *out);

static int canon_number(Cursor *c, Buffer *out) {
    const unsigned char *start = c->p;
    int integer;
    size_t integer_digits;
    if (scan_number(c, NULL, &integer, &integer_digits) < 0) {
        return DECLINE;
    }
    const unsigned char *p = start, *end = c->p;
    for (const unsigned char *q = start; q < end; q++) {
        if (*q == 'e' || *q == 'E') {
            return DECLINE;
        }
    }
    int negative = *p == '-';
    if (negative) {
        p++;
    }
    if (integer) {
        if (integer_digits > 18 || (integer_digits == 1 && *p == '0' && negative)) {
            return DECLINE; /* "-0" is the integer 0 */
        }
        return buffer_append(out, start, (size_t)(end - start)) < 0 ? DECLINE : 0;
    }
    const unsigned char *int_start = p, *int_end = p + integer_digits;
    const unsigned char *frac = int_end + 1, *frac_end = end;
    while (frac_end > frac + 1 && frac_end[-1] == '0') {
        frac_end--; /* trailing zeros of the fraction, all but one */
    }
    size_t frac_size = (size_t)(frac_end - frac);
    int frac_zero = frac_size == 1 && *frac == '0';
    size_t significant;
    if (integer_digits == 1 && *int_start == '0') {
        if (!frac_zero) {
            size_t zeros = 0;
            while (zeros < frac_size && frac[zeros] == '0') {
                zeros++;
            }
            if (zeros > 3) {
                return DECLINE; /* below 1e-4: orjson may write an exponent */
            }
            significant = frac_size - zeros;
        } else {
            significant = 0;
        }
    } else {
        if (integer_digits > 15) {
            return DECLINE;
        }
        if (frac_zero) {
            const unsigned char *last = int_end;
            while (last > int_start + 1 && last[-1] == '0') {
                last--;
            }
            significant = (size_t)(last - int_start);
        } else {
            significant = integer_digits + frac_size;
        }
    }
    if (significant > 15) {
        return DECLINE; /* the shortest text that reads back as the same double may differ */
    }
    if ((negative && buffer_append(out, "-", 1) < 0) || buffer_append(out, int_start, integer_digits) < 0 ||
        buffer_append(out, ".", 1) < 0 || buffer_append(out, frac, frac_size) < 0) {
        return DECLINE;
    }
    return 0;
}

static int member_order(const void *a, const void *b) {
    const CanonMember *left = a, *right = b;
    size_t size = left->key_size < right->key_size ? left->key_size : right->key_size;
    int order = memcmp(left->key, right->key, size);
    if (order) {
        return order;
    }
    return (left->key_size > right->key_size) - (left->key_size < right->key_size);
}

static int canon_object(Cursor *c, Buffer *out) {
    if (buffer_append(out, "{", 1) < 0) {
        return DECLINE;
    }
    int more = open_container(c, '{', '}');
    if (more <= 0) {
        return more < 0 || buffer_append(out, "}", 1) < 0 ? DECLINE : 0;
    }
    CanonMember members[MAX_CANON_MEMBERS];
    char stack_copy[CANON_STACK_COPY];
    char *copy = NULL;
    int result = DECLINE;
    size_t count = 0, region = out->size;
    while (more > 0) {
        Span key;
        int escaped;
        if (count == MAX_CANON_MEMBERS || read_key(c, &key, &escaped) < 0 || escaped) {
            goto done;
        }
        for (size_t i = 0; i < key.size; i++) {
            if (key.start[i] >= 0x80) {
                goto done; /* orjson's order of keys beyond ASCII is not checked here */
            }
        }
        if (count && buffer_append(out, ",", 1) < 0) { /* written in order; reordered below if need be */
            goto done;
        }
        CanonMember *member = &members[count++];
        member->key = key.start;
        member->key_size = key.size;
        member->start = out->size;
        if (buffer_append(out, "\"", 1) < 0 || buffer_append(out, key.start, key.size) < 0 ||
            buffer_append(out, "\":", 2) < 0 || canon_value(c, out) < 0) {
            goto done;
        }
        member->size = out->size - member->start;
        more = next_item(c, '}');
    }
    if (more < 0) {
        goto done;
    }
    int sorted = 1;
    for (size_t i = 1; i < count && sorted; i++) {
        sorted = member_order(&members[i - 1], &members[i]) < 0;
    }
    if (sorted) { /* in order already, and no key twice: written as it should be */
        result = buffer_append(out, "}", 1) < 0 ? DECLINE : 0;
        goto done;
    }
    qsort(members, count, sizeof(CanonMember), member_order);
    for (size_t i = 1; i < count; i++) {
        if (member_order(&members[i - 1], &members[i]) == 0) {
            goto done; /* a key given twice */
        }
    }
    size_t size = out->size - region;
    copy = size <= CANON_STACK_COPY ? stack_copy : PyMem_RawMalloc(size ? size : 1);
    if (copy == NULL) {
        goto done;
    }
    memcpy(copy, out->data + region, size);
    out->size = region;
    for (size_t i = 0; i < count; i++) {
        if ((i && buffer_append(out, ",", 1) < 0) ||
            buffer_append(out, copy + (members[i].start - region), members[i].size) < 0) {
            goto done;
        }
    }
    result = buffer_append(out, "}", 1) < 0 ? DECLINE : 0;
done:
    if (copy != stack_copy) {
        PyMem_RawFree(copy);
    }
    return result;
}

static int canon_value(Cursor *c, Buffer *out) {
    if (c->p >= c->end) {
        return DECLINE;
    }
    unsigned char b = *c->p;
    const unsigned char *start = c->p;
    if (b == '"') {
        Span span;
        int escaped;
        if (scan_string(c, &span, &escaped) < 0 || escaped) {
            return DECLINE;
        }
        return buffer_append(out, start, (size_t)(c->p - start)) < 0 ? DECLINE : 0;
    }
    if (b == '{') {
        return canon_object(c, out);
    }
    if (b == '[') {
        if (buffer_append(out, "[", 1) < 0) {
            return DECLINE;
        }
        int more = open_container(c, '[', ']');
        int first = 1;
        while (more > 0) {
            if ((!first && buffer_append(out, ",", 1) < 0) || canon_value(c, out) < 0) {
                return DECLINE;
            }
            first = 0;
            more = next_item(c, ']');
        }
        return more < 0 || buffer_append(out, "]", 1) < 0 ? DECLINE : 0;
    }
    if (b == 't' || b == 'f' || b == 'n') {
        const char *word = b == 't' ? "true" : b == 'f' ? "false" : "null";
        size_t size = b == 'f' ? 5 : 4;
        if (literal(c, word, size) < 0) {
            return DECLINE;
        }
        return buffer_append(out, word, size) < 0 ? DECLINE : 0;
    }
    return canon_number(c, out);
}

/* The canonical text of one line in ``out`` (emptied first), or DECLINE. */
static int canon_line(const unsigned char *start, const unsigned char *end, Buffer *out) {
    Cursor c = {start, end, 0};
    out->size = 0;
    skip_space(&c);
    if (c.p >= c.end || *c.p != '{' || canon_value(&c, out) < 0) {
        return DECLINE;
    }
    skip_space(&c);
    return c.p == c.end ? 0 : DECLINE;
}

PyObject *content_versions(PyObject *module, PyObject *args) {
    PyObject *lines, *result = NULL;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &lines)) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(lines);
    const unsigned char **starts = PyMem_RawMalloc(sizeof(char *) * (size_t)(count + 1));
    Py_ssize_t *sizes = PyMem_RawMalloc(sizeof(Py_ssize_t) * (size_t)(count + 1));
    char *hex = PyMem_RawMalloc((size_t)count * 32 + 1);
    char *ok = PyMem_RawMalloc((size_t)count + 1);
    Buffer out = {0};
    if (starts == NULL || sizes == NULL || hex == NULL || ok == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(lines, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "content_versions: lines must be bytes");
            goto done;
        }
        starts[i] = (const unsigned char *)PyBytes_AS_STRING(item);
        sizes[i] = PyBytes_GET_SIZE(item);
    }
    Py_BEGIN_ALLOW_THREADS
    static const char digits[] = "0123456789abcdef";
    for (Py_ssize_t i = 0; i < count; i++) {
        ok[i] = canon_line(starts[i], starts[i] + sizes[i], &out) == 0;
        if (ok[i]) {
            unsigned char digest[SHA256_DIGEST_LENGTH];
            SHA256_CTX context;
            SHA256_Init(&context);
            SHA256_Update(&context, out.data ? out.data : "", out.size);
            SHA256_Final(digest, &context);
            for (int j = 0; j < 16; j++) {
                hex[32 * i + 2 * j] = digits[digest[j] >> 4];
                hex[32 * i + 2 * j + 1] = digits[digest[j] & 15];
            }
        }
    }
    Py_END_ALLOW_THREADS
    result = PyList_New(count);
    for (Py_ssize_t i = 0; result != NULL && i < count; i++) {
        PyObject *item = ok[i] ? PyUnicode_FromStringAndSize(hex + 32 * i, 32) : Py_NewRef(Py_None);
        if (item == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, i, item);
    }
done:
    buffer_free(&out);
    PyMem_RawFree(starts);
    PyMem_RawFree(sizes);
    PyMem_RawFree(hex);
    PyMem_RawFree(ok);
    return result;
}
