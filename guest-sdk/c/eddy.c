/*
 * The per-record API of eddy.h over the bindings wit-bindgen generates for the world
 * (packed_operator.h): it walks the batches (packed, or flat from `handler.process`),
 * builds the output batch and maps errors. Stores live in eddy_store.c.
 *
 * Ownership follows wit-bindgen's C ABI: an export owns its arguments (freed here) and
 * hands over malloc'd results (freed by the generated post-return); an import borrows
 * its arguments and hands over its results (freed here).
 */
#include "eddy_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef eddy_operator_types_span_t span_t;

#define xrealloc eddy_xrealloc

void *eddy_xrealloc(void *ptr, size_t size) {
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL) abort(); /* out of memory: the host sees a trap and replaces the instance */
    return p;
}

/* ---- errors --------------------------------------------------------------------------- */

static char *error_message;

static eddy_status set_error(eddy_status status, const char *format, va_list args) {
    va_list copy;
    va_copy(copy, args);
    int n = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    free(error_message);
    error_message = xrealloc(NULL, n > 0 ? (size_t)n + 1 : 1);
    vsnprintf(error_message, n > 0 ? (size_t)n + 1 : 1, format, args);
    return status;
}

eddy_status eddy_bad_input(const char *format, ...) {
    va_list args;
    va_start(args, format);
    eddy_status s = set_error(EDDY_BAD_INPUT, format, args);
    va_end(args);
    return s;
}

eddy_status eddy_fatal(const char *format, ...) {
    va_list args;
    va_start(args, format);
    eddy_status s = set_error(EDDY_FATAL, format, args);
    va_end(args);
    return s;
}

/* The pending message as a wit string (ownership passes to the caller). */
static operator_string_t take_error(const char *fallback) {
    operator_string_t out;
    if (error_message == NULL) {
        operator_string_dup(&out, fallback);
    } else {
        out.ptr = (uint8_t *)error_message;
        out.len = strlen(error_message);
        error_message = NULL;
    }
    return out;
}

static eddy_operator_types_error_t wire_error(eddy_status status) {
    eddy_operator_types_error_t e;
    e.tag = status == EDDY_BAD_INPUT ? EDDY_OPERATOR_TYPES_ERROR_BAD_INPUT : EDDY_OPERATOR_TYPES_ERROR_FATAL;
    if (status == EDDY_BAD_INPUT) {
        e.val.bad_input = take_error("bad input (the operator gave no message)");
    } else {
        e.val.fatal = take_error("fatal error (the operator gave no message)");
    }
    return e;
}

/* ---- events --------------------------------------------------------------------------- */

static eddy_bytes in_span(const operator_list_u8_t *data, span_t s) {
    if (s.len == ABSENT_LEN || (uint64_t)s.offset + s.len > data->len) return EDDY_ABSENT;
    return eddy_bytes_of(data->ptr + s.offset, s.len);
}

eddy_bytes eddy_event_header(const eddy_event *event, const char *name) {
    eddy_bytes wanted = eddy_str(name);
    for (size_t i = 0; i < event->header_count; i++) {
        if (eddy_bytes_equal(event->headers[i].name, wanted)) return event->headers[i].value;
    }
    return EDDY_ABSENT;
}

/* ---- the output batch being built ----------------------------------------------------- */

struct eddy_ctx {
    uint8_t *data;
    size_t data_len, data_cap;
    eddy_operator_types_output_meta_t *outputs;
    size_t outputs_len, outputs_cap;
    eddy_operator_types_header_meta_t *headers;
    size_t headers_len, headers_cap;
    int64_t current_timestamp;
    /* The pipeline input of the batch being handled (one per batch). */
    operator_string_t input;
    bool has_input;
};

static eddy_ctx context;

static span_t push_bytes(eddy_ctx *ctx, eddy_bytes b) {
    if (b.ptr == NULL) return (span_t){0, ABSENT_LEN};
    if (ctx->data_len + b.len > ctx->data_cap) {
        size_t cap = ctx->data_cap ? ctx->data_cap * 2 : 4096;
        while (cap < ctx->data_len + b.len) cap *= 2;
        ctx->data = xrealloc(ctx->data, cap);
        ctx->data_cap = cap;
    }
    span_t s = {(uint32_t)ctx->data_len, (uint32_t)b.len};
    if (b.len) memcpy(ctx->data + ctx->data_len, b.ptr, b.len);
    ctx->data_len += b.len;
    return s;
}

#define GROW(ptr, len, cap)                                     \
    do {                                                        \
        if ((len) == (cap)) {                                   \
            (cap) = (cap) ? (cap) * 2 : 64;                     \
            (ptr) = xrealloc((ptr), (cap) * sizeof *(ptr));     \
        }                                                       \
    } while (0)

void eddy_emit_event(eddy_ctx *ctx, const char *port, const eddy_event *event) {
    eddy_operator_types_output_meta_t out;
    out.event.key = push_bytes(ctx, event->key);
    out.event.value = push_bytes(ctx, event->value.ptr ? event->value : eddy_bytes_of("", 0));
    out.event.timestamp = event->timestamp == EDDY_INHERIT_TIMESTAMP ? ctx->current_timestamp : event->timestamp;
    out.event.headers_start = (uint32_t)ctx->headers_len;
    out.event.headers_len = (uint32_t)event->header_count;
    for (size_t i = 0; i < event->header_count; i++) {
        GROW(ctx->headers, ctx->headers_len, ctx->headers_cap);
        eddy_operator_types_header_meta_t h;
        h.name = push_bytes(ctx, event->headers[i].name);
        h.value = push_bytes(ctx, event->headers[i].value.ptr ? event->headers[i].value : eddy_bytes_of("", 0));
        ctx->headers[ctx->headers_len++] = h;
    }
    out.port = push_bytes(ctx, port ? eddy_str(port) : EDDY_ABSENT);
    GROW(ctx->outputs, ctx->outputs_len, ctx->outputs_cap);
    ctx->outputs[ctx->outputs_len++] = out;
}

void eddy_emit(eddy_ctx *ctx, eddy_bytes key, eddy_bytes value) {
    eddy_event e = {key, value, EDDY_INHERIT_TIMESTAMP, NULL, 0};
    eddy_emit_event(ctx, NULL, &e);
}

static void reset_outputs(eddy_ctx *ctx) {
    ctx->data_len = ctx->outputs_len = ctx->headers_len = 0;
}

/* Hands the built batch over (the generated post-return frees its buffers). */
static eddy_operator_types_output_batch_t take_outputs(eddy_ctx *ctx) {
    eddy_operator_types_output_batch_t b;
    b.data.ptr = ctx->data_len ? ctx->data : NULL;
    b.data.len = ctx->data_len;
    b.outputs.ptr = ctx->outputs_len ? ctx->outputs : NULL;
    b.outputs.len = ctx->outputs_len;
    b.headers.ptr = ctx->headers_len ? ctx->headers : NULL;
    b.headers.len = ctx->headers_len;
    if (ctx->data_len) ctx->data = NULL, ctx->data_cap = 0;
    else free(ctx->data), ctx->data = NULL, ctx->data_cap = 0;
    if (ctx->outputs_len) ctx->outputs = NULL, ctx->outputs_cap = 0;
    if (ctx->headers_len) ctx->headers = NULL, ctx->headers_cap = 0;
    reset_outputs(ctx);
    return b;
}

/* ---- timers, log ---------------------------------------------------------------------- */

static operator_list_u8_t as_list(eddy_bytes b) {
    return (operator_list_u8_t){(uint8_t *)(b.ptr ? b.ptr : (const uint8_t *)""), b.len};
}

int64_t eddy_watermark(eddy_ctx *ctx) {
    (void)ctx;
    return eddy_operator_timers_watermark();
}

/* Reads the batch's input from the host (none: a timer call). */
static void take_input(eddy_ctx *ctx, bool from_host) {
    if (ctx->has_input) operator_string_free(&ctx->input);
    ctx->has_input = from_host && eddy_operator_context_current_input(&ctx->input);
}

eddy_bytes eddy_input(const eddy_ctx *ctx) {
    return ctx->has_input ? eddy_bytes_of(ctx->input.ptr, ctx->input.len) : (eddy_bytes){NULL, 0};
}

void eddy_set_timer(eddy_ctx *ctx, eddy_bytes key, int64_t at) {
    (void)ctx;
    operator_list_u8_t k = as_list(key);
    eddy_operator_timers_set_event_timer(&k, at);
}

void eddy_delete_timer(eddy_ctx *ctx, eddy_bytes key, int64_t at) {
    (void)ctx;
    operator_list_u8_t k = as_list(key);
    eddy_operator_timers_delete_event_timer(&k, at);
}

void eddy_log(eddy_level level, const char *format, ...) {
    char stack[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(stack, sizeof stack, format, args);
    va_end(args);
    char *text = stack;
    if (n >= (int)sizeof stack) {
        text = xrealloc(NULL, (size_t)n + 1);
        va_start(args, format);
        vsnprintf(text, (size_t)n + 1, format, args);
        va_end(args);
    }
    operator_string_t message = {(uint8_t *)text, n > 0 ? (size_t)n : 0};
    eddy_operator_log_log((eddy_operator_log_level_t)level, &message);
    if (text != stack) free(text);
}

/* ---- config --------------------------------------------------------------------------- */

struct eddy_config {
    size_t len;
    char **names;
    char **values;
};

static eddy_config config;

static char *dup_string(const operator_string_t *s) {
    char *out = xrealloc(NULL, s->len + 1);
    memcpy(out, s->ptr, s->len);
    out[s->len] = '\0';
    return out;
}

const char *eddy_config_get(const eddy_config *c, const char *name) {
    for (size_t i = 0; i < c->len; i++) {
        if (strcmp(c->names[i], name) == 0) return c->values[i];
    }
    return NULL;
}

/* ---- defaults for the optional callbacks ---------------------------------------------- */

__attribute__((weak)) eddy_status eddy_init(const eddy_config *c) {
    (void)c;
    return EDDY_OK;
}

__attribute__((weak)) eddy_status eddy_on_timer(eddy_bytes key, int64_t at, eddy_ctx *ctx) {
    (void)key, (void)at, (void)ctx;
    return EDDY_OK;
}

__attribute__((weak)) eddy_status eddy_migrate(const char *store, uint32_t from_version, eddy_bytes key,
                                               eddy_bytes value, eddy_bytes *out) {
    (void)store, (void)from_version, (void)key;
    *out = value;
    return EDDY_OK;
}

__attribute__((weak)) uint32_t eddy_state_version(void) {
    return 1;
}

/* ---- the exported handler ------------------------------------------------------------- */

bool exports_eddy_operator_handler_init(operator_list_tuple2_string_string_t *cfg,
                                        exports_eddy_operator_handler_operator_info_t *ret, operator_string_t *err) {
    config.len = cfg->len;
    config.names = xrealloc(NULL, cfg->len * sizeof(char *));
    config.values = xrealloc(NULL, cfg->len * sizeof(char *));
    for (size_t i = 0; i < cfg->len; i++) {
        config.names[i] = dup_string(&cfg->ptr[i].f0);
        config.values[i] = dup_string(&cfg->ptr[i].f1);
    }
    operator_list_tuple2_string_string_free(cfg);
    eddy_stores_begin(false, 0);
    if (eddy_init(&config) != EDDY_OK) {
        eddy_stores_discard();
        *err = take_error("init failed (the operator gave no message)");
        return false;
    }
    /* Stores written in init reach the host like a call's writes. */
    eddy_stores_finish(false);
    ret->state_version = eddy_state_version();
    return true;
}

/* One event of a batch, whichever form it came in. */
typedef struct {
    span_t key, value;
    int64_t timestamp;
    uint32_t headers_start, headers_len;
} event_meta;

/* Where a batch's events and headers are, flat or packed. */
typedef struct {
    const operator_list_u8_t *data;
    size_t count;
    size_t header_count;
    event_meta (*event)(const void *batch, size_t i);
    bool (*header)(const void *batch, uint32_t i, span_t *name, span_t *value);
    const void *batch;
} batch_view;

/* Runs the operator over every event, the stores' caches kept under `epoch` when there
 * is one. On failure drops what the batch emitted and cached, fills `err` and returns
 * false. */
static bool run_batch(const batch_view *b, bool has_epoch, uint64_t epoch, eddy_operator_types_batch_error_t *err) {
    eddy_ctx *ctx = &context;
    reset_outputs(ctx);
    eddy_stores_begin(has_epoch, epoch);
    take_input(ctx, true);
    eddy_header *headers = NULL;
    size_t headers_cap = 0;
    for (size_t i = 0; i < b->count; i++) {
        event_meta m = b->event(b->batch, i);
        /* The host's descriptions are checked anyway: no more headers than the batch has. */
        if (m.headers_start > b->header_count) m.headers_len = 0;
        if (m.headers_len > b->header_count - m.headers_start) m.headers_len = (uint32_t)(b->header_count - m.headers_start);
        if (m.headers_len > headers_cap) {
            headers_cap = m.headers_len;
            headers = xrealloc(headers, headers_cap * sizeof *headers);
        }
        uint32_t n = 0;
        for (uint32_t h = 0; h < m.headers_len; h++) {
            span_t name, value;
            if (!b->header(b->batch, m.headers_start + h, &name, &value)) break;
            headers[n].name = in_span(b->data, name);
            headers[n].value = in_span(b->data, value);
            n++;
        }
        eddy_bytes value = in_span(b->data, m.value);
        eddy_event e = {in_span(b->data, m.key), value.ptr ? value : eddy_bytes_of("", 0), m.timestamp, headers, n};
        ctx->current_timestamp = m.timestamp;
        eddy_status s = eddy_process(&e, ctx);
        if (s != EDDY_OK) {
            free(headers);
            reset_outputs(ctx);
            eddy_stores_discard();
            err->index = (uint32_t)i;
            err->error = wire_error(s);
            return false;
        }
    }
    free(headers);
    eddy_stores_finish(has_epoch);
    return true;
}

static event_meta flat_event(const void *batch, size_t i) {
    eddy_operator_types_event_meta_t m = ((const exports_eddy_operator_handler_event_batch_t *)batch)->events.ptr[i];
    return (event_meta){m.key, m.value, m.timestamp, m.headers_start, m.headers_len};
}

static bool flat_header(const void *batch, uint32_t i, span_t *name, span_t *value) {
    const exports_eddy_operator_handler_event_batch_t *b = batch;
    if (i >= b->headers.len) return false;
    *name = b->headers.ptr[i].name;
    *value = b->headers.ptr[i].value;
    return true;
}

bool exports_eddy_operator_handler_process(exports_eddy_operator_handler_event_batch_t *batch,
                                           exports_eddy_operator_handler_output_batch_t *ret,
                                           exports_eddy_operator_handler_batch_error_t *err) {
    /* No state epoch comes this way: the caches last one batch. */
    batch_view view = {&batch->data, batch->events.len, batch->headers.len, flat_event, flat_header, batch};
    bool ok = run_batch(&view, false, 0, err);
    exports_eddy_operator_handler_event_batch_free(batch);
    if (ok) *ret = take_outputs(&context);
    return ok;
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

static event_meta packed_event(const void *batch, size_t i) {
    const uint8_t *p = ((const exports_eddy_operator_packed_handler_packed_batch_t *)batch)->events.ptr + i * 32;
    uint64_t ts = (uint64_t)le32(p + 16) | (uint64_t)le32(p + 20) << 32;
    return (event_meta){{le32(p), le32(p + 4)}, {le32(p + 8), le32(p + 12)}, (int64_t)ts, le32(p + 24), le32(p + 28)};
}

static bool packed_header(const void *batch, uint32_t i, span_t *name, span_t *value) {
    const exports_eddy_operator_packed_handler_packed_batch_t *b = batch;
    if (i >= b->headers.len / 16) return false;
    const uint8_t *p = b->headers.ptr + (size_t)i * 16;
    *name = (span_t){le32(p), le32(p + 4)};
    *value = (span_t){le32(p + 8), le32(p + 12)};
    return true;
}

/* The built outputs, packed: 40 bytes per output, 16 per header. */
static exports_eddy_operator_packed_handler_packed_output_t take_packed_outputs(eddy_ctx *ctx) {
    eddy_operator_types_output_batch_t flat = take_outputs(ctx);
    exports_eddy_operator_packed_handler_packed_output_t out;
    out.data = flat.data;
    out.outputs.len = flat.outputs.len * 40;
    out.outputs.ptr = out.outputs.len ? xrealloc(NULL, out.outputs.len) : NULL;
    for (size_t i = 0; i < flat.outputs.len; i++) {
        eddy_operator_types_output_meta_t o = flat.outputs.ptr[i];
        uint8_t *p = out.outputs.ptr + i * 40;
        uint64_t ts = (uint64_t)o.event.timestamp;
        uint32_t words[10] = {o.event.key.offset, o.event.key.len, o.event.value.offset, o.event.value.len,
                              (uint32_t)ts, (uint32_t)(ts >> 32), o.event.headers_start, o.event.headers_len,
                              o.port.offset, o.port.len};
        for (int w = 0; w < 10; w++) put_le32(p + w * 4, words[w]);
    }
    out.headers.len = flat.headers.len * 16;
    out.headers.ptr = out.headers.len ? xrealloc(NULL, out.headers.len) : NULL;
    for (size_t i = 0; i < flat.headers.len; i++) {
        eddy_operator_types_header_meta_t h = flat.headers.ptr[i];
        uint8_t *p = out.headers.ptr + i * 16;
        put_le32(p, h.name.offset), put_le32(p + 4, h.name.len);
        put_le32(p + 8, h.value.offset), put_le32(p + 12, h.value.len);
    }
    free(flat.outputs.ptr);
    free(flat.headers.ptr);
    return out;
}

bool exports_eddy_operator_packed_handler_process(exports_eddy_operator_packed_handler_packed_batch_t *batch,
                                                  exports_eddy_operator_packed_handler_packed_output_t *ret,
                                                  exports_eddy_operator_packed_handler_batch_error_t *err) {
    batch_view view = {&batch->data, batch->events.len / 32, batch->headers.len / 16, packed_event, packed_header,
                       batch};
    bool ok = run_batch(&view, true, batch->state_epoch, err);
    exports_eddy_operator_packed_handler_packed_batch_free(batch);
    if (ok) *ret = take_packed_outputs(&context);
    return ok;
}

bool exports_eddy_operator_handler_on_timer(operator_list_u8_t *key, int64_t at,
                                            exports_eddy_operator_handler_output_batch_t *ret,
                                            exports_eddy_operator_handler_error_t *err) {
    eddy_ctx *ctx = &context;
    reset_outputs(ctx);
    ctx->current_timestamp = at;
    take_input(ctx, false);
    /* No state epoch comes with a timer: it starts from the host's values. */
    eddy_stores_begin(false, 0);
    eddy_status s = eddy_on_timer(eddy_bytes_of(key->ptr, key->len), at, ctx);
    operator_list_u8_free(key);
    if (s != EDDY_OK) {
        reset_outputs(ctx);
        eddy_stores_discard();
        *err = wire_error(s);
        return false;
    }
    eddy_stores_finish(false);
    *ret = take_outputs(ctx);
    return true;
}

bool exports_eddy_operator_handler_migrate(operator_string_t *store, uint32_t from_version,
                                           exports_eddy_operator_handler_kv_batch_t *entries,
                                           exports_eddy_operator_handler_byte_list_t *ret, operator_string_t *err) {
    char *name = dup_string(store);
    operator_string_free(store);
    eddy_ctx scratch = {0};
    span_t *items = xrealloc(NULL, entries->entries.len * sizeof *items);
    for (size_t i = 0; i < entries->entries.len; i++) {
        eddy_operator_types_kv_meta_t m = entries->entries.ptr[i];
        eddy_bytes key = in_span(&entries->data, m.key);
        eddy_bytes value = in_span(&entries->data, m.value);
        eddy_bytes out = value;
        if (eddy_migrate(name, from_version, key, value, &out) != EDDY_OK) {
            operator_string_t why = take_error("no message");
            char *text = xrealloc(NULL, why.len + strlen(name) + 32);
            int n = sprintf(text, "migrating store %s: %.*s", name, (int)why.len, (const char *)why.ptr);
            operator_string_free(&why);
            *err = (operator_string_t){(uint8_t *)text, (size_t)n};
            free(items);
            free(scratch.data);
            free(name);
            exports_eddy_operator_handler_kv_batch_free(entries);
            return false;
        }
        items[i] = push_bytes(&scratch, out);
    }
    ret->items.ptr = entries->entries.len ? items : (free(items), NULL);
    ret->items.len = entries->entries.len;
    ret->data.ptr = scratch.data;
    ret->data.len = scratch.data_len;
    free(name);
    exports_eddy_operator_handler_kv_batch_free(entries);
    return true;
}

/* ---- windows ---------------------------------------------------------------------------
 * Store entries: key `len(key) (u32 BE) | key | start (i64 BE, sign bit flipped)`, value
 * `end (i64 LE) | closed (1 byte) | count (i64 LE)`; timers keyed by the entry key. */

static void put_i64_le(uint8_t *p, int64_t v) {
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(u >> (8 * i));
}

static int64_t get_i64_le(const uint8_t *p) {
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u |= (uint64_t)p[i] << (8 * i);
    return (int64_t)u;
}

/* The entry key of (key, start) in `out` (4 + key.len + 8 bytes). */
static size_t window_id(uint8_t *out, eddy_bytes key, int64_t start) {
    uint32_t n = (uint32_t)key.len;
    out[0] = (uint8_t)(n >> 24), out[1] = (uint8_t)(n >> 16), out[2] = (uint8_t)(n >> 8), out[3] = (uint8_t)n;
    if (key.len) memcpy(out + 4, key.ptr, key.len);
    uint64_t s = (uint64_t)start ^ (1ULL << 63);
    for (int i = 0; i < 8; i++) out[4 + key.len + i] = (uint8_t)(s >> (8 * (7 - i)));
    return 4 + key.len + 8;
}

static bool window_split(eddy_bytes id, eddy_bytes *key, int64_t *start) {
    if (id.len < 12) return false;
    size_t n = ((size_t)id.ptr[0] << 24) | ((size_t)id.ptr[1] << 16) | ((size_t)id.ptr[2] << 8) | id.ptr[3];
    if (id.len != 4 + n + 8) return false;
    uint64_t s = 0;
    for (int i = 0; i < 8; i++) s = (s << 8) | id.ptr[4 + n + i];
    *key = eddy_bytes_of(id.ptr + 4, n);
    *start = (int64_t)(s ^ (1ULL << 63));
    return true;
}

typedef struct {
    int64_t end;
    bool closed;
    int64_t count;
} window_entry;

static bool window_decode(eddy_bytes v, window_entry *e) {
    if (v.len < 9) return false;
    e->end = get_i64_le(v.ptr);
    e->closed = v.ptr[8] != 0;
    e->count = v.len == 17 ? get_i64_le(v.ptr + 9) : 0;
    return true;
}

static void window_store_entry(eddy_store *s, const uint8_t *id, size_t id_len, window_entry e) {
    uint8_t v[17];
    put_i64_le(v, e.end);
    v[8] = e.closed ? 1 : 0;
    put_i64_le(v + 9, e.count);
    eddy_set(s, eddy_bytes_of(id, id_len), eddy_bytes_of(v, sizeof v));
}

static eddy_store *window_store(eddy_ctx *ctx, const eddy_windows *w) {
    return eddy_store_open(ctx, w->store ? w->store : "windows");
}

/* One open session of a key, as found by a scan. */
typedef struct {
    uint8_t *id;
    size_t id_len;
    int64_t start;
    window_entry e;
} session_part;

typedef struct {
    session_part *parts;
    size_t len;
    int64_t start, end;
    bool bad;
} session_scan;

static bool session_visit(eddy_bytes id, eddy_bytes value, void *user) {
    session_scan *sc = user;
    eddy_bytes k;
    int64_t s;
    window_entry e;
    if (!window_split(id, &k, &s) || !window_decode(value, &e)) {
        sc->bad = true;
        return false;
    }
    if (!(s < sc->end && sc->start < e.end)) return true;
    for (size_t i = 0; i < sc->len; i++) {
        if (sc->parts[i].id_len == id.len && memcmp(sc->parts[i].id, id.ptr, id.len) == 0) return true;
    }
    sc->parts = xrealloc(sc->parts, (sc->len + 1) * sizeof *sc->parts);
    session_part *p = &sc->parts[sc->len++];
    p->id = xrealloc(NULL, id.len);
    memcpy(p->id, id.ptr, id.len);
    p->id_len = id.len;
    p->start = s;
    p->e = e;
    return true;
}

eddy_status eddy_window_count(eddy_ctx *ctx, const eddy_windows *w, const eddy_event *event,
                              eddy_window_visitor updated, void *user, bool *dropped) {
    if (w->kind == EDDY_SLIDING && (w->size + w->slide - 1) / w->slide > 64) {
        return eddy_fatal("sliding windows: size / slide must be at most 64 (an event's window count)");
    }
    eddy_store *store = window_store(ctx, w);
    if (store == NULL) return EDDY_FATAL;
    eddy_bytes key = eddy_is_absent(event->key) ? eddy_bytes_of("", 0) : event->key;
    int64_t ts = event->timestamp, watermark = eddy_watermark(ctx);
    uint8_t *id = xrealloc(NULL, 4 + key.len + 8);
    eddy_status status = EDDY_OK;
    bool any = false;
    /* The windows of the event: [start, end) with the count it adds to. */
    int64_t starts[64], ends[64], merged[64];
    size_t n = 0;
    if (w->kind == EDDY_SESSION) {
        if (ts + w->gap + w->lateness <= watermark) {
            *dropped = true;
            free(id);
            return EDDY_OK;
        }
        session_scan sc = {NULL, 0, ts, ts + w->gap, false};
        size_t pn = window_id(id, key, 0) - 8; /* the key prefix */
        uint8_t *end_key = xrealloc(NULL, pn);
        memcpy(end_key, id, pn);
        /* The end of the prefix's range: drop trailing 0xFF bytes, add 1 to the last. */
        size_t el = pn;
        while (el && end_key[el - 1] == 0xFF) el--;
        if (el) end_key[el - 1]++;
        for (;;) {
            int64_t before_start = sc.start, before_end = sc.end;
            eddy_scan(store, eddy_bytes_of(id, pn), el ? eddy_bytes_of(end_key, el) : EDDY_ABSENT, session_visit, &sc);
            for (size_t i = 0; i < sc.len; i++) {
                if (sc.parts[i].start < sc.start) sc.start = sc.parts[i].start;
                if (sc.parts[i].e.end > sc.end) sc.end = sc.parts[i].e.end;
            }
            if (sc.bad || (sc.start == before_start && sc.end == before_end)) break;
        }
        free(end_key);
        if (sc.bad) status = eddy_fatal("window store: an entry that is not a window's");
        bool single_same_start = sc.len == 1 && sc.parts[0].start == sc.start;
        int64_t total = 0;
        for (size_t i = 0; i < sc.len; i++) {
            session_part *p = &sc.parts[i];
            eddy_delete_timer(ctx, eddy_bytes_of(p->id, p->id_len), p->e.closed ? p->e.end + w->lateness : p->e.end);
            if (!single_same_start) eddy_delete(store, eddy_bytes_of(p->id, p->id_len));
            total += p->e.count;
            free(p->id);
        }
        free(sc.parts);
        starts[0] = sc.start, ends[0] = sc.end, merged[0] = single_same_start ? -1 : (sc.len ? total : -1);
        n = 1;
    } else {
        /* The latest start at or before `ts`, clamped at the start of time (no overflow). */
        int64_t r = ts % w->slide;
        if (r < 0) r += w->slide;
        int64_t start = ts < INT64_MIN + r ? INT64_MIN : ts - r;
        int64_t first = ts > INT64_MIN + w->size ? ts - w->size : INT64_MIN;
        while (start > first && n < 64) {
            starts[n] = start, ends[n] = start < INT64_MAX - w->size ? start + w->size : INT64_MAX, merged[n] = -1;
            n++;
            if (start < INT64_MIN + w->slide) break;
            start -= w->slide;
        }
    }
    for (size_t i = 0; status == EDDY_OK && i < n; i++) {
        if (ends[i] + w->lateness <= watermark) continue;
        any = true;
        size_t id_len = window_id(id, key, starts[i]);
        eddy_bytes prev = eddy_get(store, eddy_bytes_of(id, id_len));
        window_entry e = {ends[i], false, 0};
        window_entry p;
        if (!eddy_is_absent(prev)) {
            if (!window_decode(prev, &p)) {
                status = eddy_fatal("window store: an entry of %zu bytes is not a window", prev.len);
                break;
            }
            e.closed = p.closed;
            e.count = merged[i] >= 0 ? merged[i] : p.count;
        } else if (merged[i] >= 0) {
            e.count = merged[i];
        }
        e.count += 1;
        window_store_entry(store, id, id_len, e);
        if (e.closed) {
            eddy_set_timer(ctx, eddy_bytes_of(id, id_len), e.end + w->lateness);
            if (updated) {
                eddy_window r = {key, starts[i], e.end, e.count, true};
                status = updated(&r, ctx, user);
            }
        } else {
            eddy_set_timer(ctx, eddy_bytes_of(id, id_len), e.end);
        }
    }
    free(id);
    *dropped = !any;
    return status;
}

eddy_status eddy_window_timer(eddy_ctx *ctx, const eddy_windows *w, eddy_bytes id, int64_t at,
                              eddy_window_visitor closed, void *user) {
    eddy_bytes key;
    int64_t start;
    if (!window_split(id, &key, &start)) return EDDY_OK;
    eddy_store *store = window_store(ctx, w);
    if (store == NULL) return EDDY_FATAL;
    eddy_bytes v = eddy_get(store, id);
    window_entry e;
    if (eddy_is_absent(v)) return EDDY_OK;
    if (!window_decode(v, &e)) return eddy_fatal("window store: an entry of %zu bytes is not a window", v.len);
    if (e.closed) {
        if (at >= e.end + w->lateness) eddy_delete(store, id);
        return EDDY_OK;
    }
    if (at < e.end) return EDDY_OK;
    if (w->lateness > 0) {
        e.closed = true;
        window_store_entry(store, id.ptr, id.len, e);
        eddy_set_timer(ctx, id, e.end + w->lateness);
    } else {
        eddy_delete(store, id);
    }
    eddy_window r = {key, start, e.end, e.count, false};
    return closed ? closed(&r, ctx, user) : EDDY_OK;
}
