/*
 * Write Eddy stream operators in C.
 *
 * An operator handles one record at a time, keeps durable state in named stores and
 * emits events; batching and the flat wire format stay inside eddy.c. Implement
 * `eddy_process` (and optionally `eddy_init`, `eddy_on_timer`, `eddy_migrate`,
 * `EDDY_STATE_VERSION`), then build with `eddy build DIR`:
 *
 *     #include "eddy.h"
 *
 *     eddy_status eddy_process(const eddy_event *event, eddy_ctx *ctx) {
 *         eddy_store *counts = eddy_store_open(ctx, "counts");
 *         int64_t n;
 *         eddy_status s = eddy_increment(counts, event->value, 1, &n);
 *         if (s != EDDY_OK) return s;
 *         char text[24];
 *         snprintf(text, sizeof text, "%lld", (long long)n);
 *         eddy_emit(ctx, event->value, eddy_str(text));
 *         return EDDY_OK;
 *     }
 *
 * Memory: everything the helper hands you (event fields, store values, config strings)
 * stays valid for the call it was given in, unless said otherwise; everything you hand
 * the helper is copied before the function returns.
 */
#ifndef EDDY_H
#define EDDY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A byte string that the caller does not own. `ptr == NULL` means absent (a keyless
 * event, a missing value); an empty present string has a non-NULL `ptr`. */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} eddy_bytes;

#define EDDY_ABSENT ((eddy_bytes){NULL, 0})

/* A NUL-terminated string as bytes (without the NUL). */
static inline eddy_bytes eddy_str(const char *s) {
    return (eddy_bytes){(const uint8_t *)s, strlen(s)};
}

static inline eddy_bytes eddy_bytes_of(const void *ptr, size_t len) {
    return (eddy_bytes){ptr ? (const uint8_t *)ptr : (const uint8_t *)"", len};
}

static inline bool eddy_is_absent(eddy_bytes b) {
    return b.ptr == NULL;
}

static inline bool eddy_bytes_equal(eddy_bytes a, eddy_bytes b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

typedef struct {
    eddy_bytes name; /* UTF-8 */
    eddy_bytes value;
} eddy_header;

/* One record. To emit one, fill a struct yourself: `timestamp = EDDY_INHERIT_TIMESTAMP`
 * takes the time of the record (or timer) being handled. */
typedef struct {
    eddy_bytes key; /* EDDY_ABSENT when keyless */
    eddy_bytes value;
    int64_t timestamp; /* event time, ms since the Unix epoch */
    const eddy_header *headers;
    size_t header_count;
} eddy_event;

#define EDDY_INHERIT_TIMESTAMP INT64_MIN

/* The value of header `name`, or EDDY_ABSENT. */
eddy_bytes eddy_event_header(const eddy_event *event, const char *name);

/* What a callback returns. On an error, set the message with `eddy_bad_input` or
 * `eddy_fatal`, which return the status to pass on:
 *     return eddy_bad_input("value is not a number: %.*s", (int)v.len, v.ptr);  */
typedef enum {
    EDDY_OK = 0,
    /* This record is bad: the pipeline's `on_error` policy (fail, skip, dead-letter) handles it. */
    EDDY_BAD_INPUT = 1,
    /* The operator cannot go on: the task fails whatever the policy. */
    EDDY_FATAL = 2,
} eddy_status;

eddy_status eddy_bad_input(const char *format, ...) __attribute__((format(printf, 1, 2)));
eddy_status eddy_fatal(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* The operator's `config` from the pipeline spec. */
typedef struct eddy_config eddy_config;

/* The value of `name` (NUL-terminated, valid until the operator is replaced), or NULL. */
const char *eddy_config_get(const eddy_config *config, const char *name);
/* Typed values (eddy_config.c). Each takes `fallback` when `name` is absent, allows
 * surrounding whitespace, and returns EDDY_FATAL with a message naming the key, the value
 * and what was expected when the value does not parse: return it from `eddy_init`. */
/* `lowercase = true`: `true` or `false`. */
eddy_status eddy_config_bool(const eddy_config *config, const char *name, bool fallback, bool *out);
/* `threshold = 5`: a whole number. */
eddy_status eddy_config_int(const eddy_config *config, const char *name, int64_t fallback, int64_t *out);
/* `ratio = 0.5`: a finite number in decimal notation. */
eddy_status eddy_config_float(const eddy_config *config, const char *name, double fallback, double *out);
/* The text of `name`, or `fallback`. */
const char *eddy_config_string(const eddy_config *config, const char *name, const char *fallback);
/* `window = "1m"` in milliseconds: a whole number with ms, s, m, h or d; `fallback` is
 * written the same way. */
eddy_status eddy_config_duration_ms(const eddy_config *config, const char *name, const char *fallback, int64_t *out);
/* `pages = ["home", 7, true]` (the host hands arrays over as JSON text): each item as a
 * NUL-terminated string (numbers and booleans as written); none when `name` is absent.
 * Free the list with `eddy_config_list_free`. */
eddy_status eddy_config_list(const eddy_config *config, const char *name, char ***items, size_t *count);
void eddy_config_list_free(char **items, size_t count);

/* What an operator can do while it handles a record or a timer. */
typedef struct eddy_ctx eddy_ctx;

/* A durable key-value store of the operator, scoped to its source partition. Writes are
 * visible at once and become durable when the host commits the batch, together with the
 * source offset and the outputs. NULL (with the message set: return EDDY_FATAL) when the
 * name is invalid. The pointer stays valid for the life of the instance. */
typedef struct eddy_store eddy_store;
eddy_store *eddy_store_open(eddy_ctx *ctx, const char *name);

/* The value under `key`, or EDDY_ABSENT. Valid until the next eddy_get. */
eddy_bytes eddy_get(eddy_store *store, eddy_bytes key);
void eddy_set(eddy_store *store, eddy_bytes key, eddy_bytes value);
void eddy_delete(eddy_store *store, eddy_bytes key);
/* Removes every key in [start, end); `end` EDDY_ABSENT: to the end of the store. */
void eddy_delete_range(eddy_store *store, eddy_bytes start, eddy_bytes end);
/* Adds `delta` to the counter under `key` (8-byte little-endian integers) and stores
 * the new value in `*out`. EDDY_BAD_INPUT when the value there is not a counter. */
eddy_status eddy_increment(eddy_store *store, eddy_bytes key, int64_t delta, int64_t *out);

/* Calls `visit` on each entry with a key in [start, end) in key order, until it returns
 * false. `end` EDDY_ABSENT: to the end of the store. */
typedef bool (*eddy_scan_visitor)(eddy_bytes key, eddy_bytes value, void *user);
void eddy_scan(eddy_store *store, eddy_bytes start, eddy_bytes end, eddy_scan_visitor visit, void *user);

/* Emits (key, value) on the main output, with the current record's timestamp. */
void eddy_emit(eddy_ctx *ctx, eddy_bytes key, eddy_bytes value);
/* Emits a full event on side output `port` (topic `<pipeline>.<port>`), or on the main
 * output when `port` is NULL. */
void eddy_emit_event(eddy_ctx *ctx, const char *port, const eddy_event *event);

/* The task's event-time watermark (ms). */
int64_t eddy_watermark(eddy_ctx *ctx);
/* Calls `eddy_on_timer(key, at)` once the watermark passes `at`. */
void eddy_set_timer(eddy_ctx *ctx, eddy_bytes key, int64_t at);
/* The name of the pipeline input the event being handled came from: its [[inputs]]
 * name, or "source" for a pipeline with one [source]; absent (eddy_is_absent) in eddy_on_timer
 * and after a repartition. Valid until the batch ends. */
eddy_bytes eddy_input(const eddy_ctx *ctx);
void eddy_delete_timer(eddy_ctx *ctx, eddy_bytes key, int64_t at);

/* ---- Windows ---------------------------------------------------------------------------
 * Event-time windows that count events per key: tumbling, sliding and session windows
 * over a store and timers, with the Rust SDK's store layout and results (see
 * eddy_guest::window). A window [start, end) closes once the watermark reaches `end`;
 * with `lateness` it is kept that much longer and a late event re-reports it (`update`). */
typedef enum { EDDY_TUMBLING, EDDY_SLIDING, EDDY_SESSION } eddy_window_kind;

typedef struct {
    eddy_window_kind kind;
    int64_t size, slide, gap, lateness;
    const char *store; /* the store holding open windows; NULL: "windows" */
} eddy_windows;

static inline eddy_windows eddy_tumbling(int64_t size) {
    return (eddy_windows){EDDY_TUMBLING, size > 0 ? size : 1, size > 0 ? size : 1, 0, 0, NULL};
}
static inline eddy_windows eddy_sliding(int64_t size, int64_t slide) {
    return (eddy_windows){EDDY_SLIDING, size > 0 ? size : 1, slide > 0 ? slide : 1, 0, 0, NULL};
}
static inline eddy_windows eddy_session(int64_t gap) {
    return (eddy_windows){EDDY_SESSION, 0, 0, gap > 0 ? gap : 1, 0, NULL};
}

/* A window's result. `key` is valid during the visitor call only. */
typedef struct {
    eddy_bytes key;
    int64_t start, end, count;
    bool update; /* a late event changed a window that had closed (allowed lateness) */
} eddy_window;

typedef eddy_status (*eddy_window_visitor)(const eddy_window *w, eddy_ctx *ctx, void *user);

/* Counts `event` (by its key and timestamp) in its windows and arms their timers; calls
 * `updated` (may be NULL) for closed windows it still changes, and sets `*dropped` when
 * the event is too late for every window it belongs to. */
eddy_status eddy_window_count(eddy_ctx *ctx, const eddy_windows *w, const eddy_event *event,
                              eddy_window_visitor updated, void *user, bool *dropped);
/* From eddy_on_timer: calls `closed` for the window the timer closes (timers of other
 * origins are ignored). */
eddy_status eddy_window_timer(eddy_ctx *ctx, const eddy_windows *w, eddy_bytes key, int64_t at,
                              eddy_window_visitor closed, void *user);

typedef enum { EDDY_TRACE, EDDY_DEBUG, EDDY_INFO, EDDY_WARN, EDDY_ERROR } eddy_level;
/* Logs into the host's log. */
void eddy_log(eddy_level level, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* ---- Implemented by the operator ---------------------------------------------------- */

/* Handles one record. Required. */
eddy_status eddy_process(const eddy_event *event, eddy_ctx *ctx);

/* Called once with the config before any record. Optional. */
eddy_status eddy_init(const eddy_config *config);

/* A timer set with eddy_set_timer fired. Optional. */
eddy_status eddy_on_timer(eddy_bytes key, int64_t at, eddy_ctx *ctx);

/* Converts `value` of `store`, written in state format `from_version`, to this
 * version's format: set `*out` (copied before the next call) or EDDY_ABSENT to delete
 * the key. Optional: the default keeps values as they are. */
eddy_status eddy_migrate(const char *store, uint32_t from_version, eddy_bytes key, eddy_bytes value, eddy_bytes *out);

/* The format version this operator writes to its stores; 1 unless declared with
 * `EDDY_STATE_VERSION(2)` at file scope. */
uint32_t eddy_state_version(void);
#define EDDY_STATE_VERSION(n) \
    uint32_t eddy_state_version(void) { return (n); }

#ifdef __cplusplus
}
#endif

#endif
