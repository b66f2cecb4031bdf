/*
 * Clicks per page per minute, in C, with the SDK's windows (eddy_window_count): the same
 * operator as examples/clicks-per-minute in Rust, byte for byte the same output.
 *
 * Each click is an event keyed by its page; every closed window emits
 * {"page", "window_start", "window_end", "count"} keyed by the page, at the window's
 * last millisecond. Config: size_ms (default 60000), slide_ms (default: the size),
 * lateness_ms (default 0). Clicks too late for every window go to the side output `late`.
 */
#include "eddy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static eddy_windows windows;

eddy_status eddy_init(const eddy_config *config) {
    int64_t size, slide, lateness;
    eddy_status s;
    if ((s = eddy_config_int(config, "size_ms", 60000, &size)) != EDDY_OK) return s;
    if ((s = eddy_config_int(config, "slide_ms", size, &slide)) != EDDY_OK) return s;
    if ((s = eddy_config_int(config, "lateness_ms", 0, &lateness)) != EDDY_OK) return s;
    if (size <= 0 || slide <= 0 || lateness < 0)
        return eddy_fatal("size_ms and slide_ms must be above 0, lateness_ms not below 0");
    windows = slide == size ? eddy_tumbling(size) : eddy_sliding(size, slide);
    windows.lateness = lateness;
    return EDDY_OK;
}

/* Emits a window's result; the page is JSON-escaped like serde_json does. */
static eddy_status emit_result(const eddy_window *w, eddy_ctx *ctx, void *user) {
    (void)user;
    size_t cap = 128 + 6 * w->key.len, n = 0;
    char *out = malloc(cap);
    if (out == NULL) abort();
    n += (size_t)snprintf(out + n, cap - n, "{\"page\":\"");
    for (size_t i = 0; i < w->key.len; i++) {
        uint8_t c = w->key.ptr[i];
        if (c == '"' || c == '\\') n += (size_t)snprintf(out + n, cap - n, "\\%c", c);
        else if (c < 0x20) n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        else out[n++] = (char)c;
    }
    n += (size_t)snprintf(out + n, cap - n, "\",\"window_start\":%" PRId64 ",\"window_end\":%" PRId64 ",\"count\":%" PRId64 "%s}",
                          w->start, w->end, w->count, w->update ? ",\"update\":true" : "");
    eddy_event e = {w->key, eddy_bytes_of(out, n), w->end - 1, NULL, 0};
    eddy_emit_event(ctx, NULL, &e);
    free(out);
    return EDDY_OK;
}

eddy_status eddy_process(const eddy_event *event, eddy_ctx *ctx) {
    if (eddy_is_absent(event->key) || event->key.len == 0)
        return eddy_bad_input("a click needs its page as the key");
    bool dropped = false;
    eddy_status s = eddy_window_count(ctx, &windows, event, emit_result, NULL, &dropped);
    if (s == EDDY_OK && dropped) eddy_emit_event(ctx, "late", event);
    return s;
}

eddy_status eddy_on_timer(eddy_bytes key, int64_t at, eddy_ctx *ctx) {
    return eddy_window_timer(ctx, &windows, key, at, emit_result, NULL);
}
