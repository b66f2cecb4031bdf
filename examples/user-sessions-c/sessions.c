/*
 * Sessions per user, in C, with the SDK's session windows (eddy_session): the same
 * operator as examples/user-sessions in Rust, byte for byte the same output. A session
 * lasts while a user's clicks come less than `gap_ms` apart; each closed session emits
 * {"user", "session_start", "session_end", "clicks"} keyed by the user, at the session's
 * last millisecond.
 */
#include "eddy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static eddy_windows windows;

eddy_status eddy_init(const eddy_config *config) {
    int64_t gap;
    eddy_status s = eddy_config_int(config, "gap_ms", 30LL * 60 * 1000, &gap);
    if (s != EDDY_OK) return s;
    if (gap <= 0) return eddy_fatal("config `gap_ms` = %lld: expected a number above 0", (long long)gap);
    windows = eddy_session(gap);
    return EDDY_OK;
}

static eddy_status emit_session(const eddy_window *w, eddy_ctx *ctx, void *user) {
    (void)user;
    size_t cap = 128 + 6 * w->key.len, n = 0;
    char *out = malloc(cap);
    if (out == NULL) abort();
    n += (size_t)snprintf(out + n, cap - n, "{\"user\":\"");
    for (size_t i = 0; i < w->key.len; i++) {
        uint8_t c = w->key.ptr[i];
        if (c == '"' || c == '\\') n += (size_t)snprintf(out + n, cap - n, "\\%c", c);
        else if (c < 0x20) n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        else out[n++] = (char)c;
    }
    n += (size_t)snprintf(out + n, cap - n, "\",\"session_start\":%" PRId64 ",\"session_end\":%" PRId64 ",\"clicks\":%" PRId64 "}",
                          w->start, w->end, w->count);
    eddy_event e = {w->key, eddy_bytes_of(out, n), w->end - 1, NULL, 0};
    eddy_emit_event(ctx, NULL, &e);
    free(out);
    return EDDY_OK;
}

eddy_status eddy_process(const eddy_event *event, eddy_ctx *ctx) {
    if (eddy_is_absent(event->key) || event->key.len == 0)
        return eddy_bad_input("a click needs its user as the key");
    bool dropped = false;
    eddy_status s = eddy_window_count(ctx, &windows, event, NULL, NULL, &dropped);
    if (s == EDDY_OK && dropped) eddy_emit_event(ctx, "late", event);
    return s;
}

eddy_status eddy_on_timer(eddy_bytes key, int64_t at, eddy_ctx *ctx) {
    return eddy_window_timer(ctx, &windows, key, at, emit_session, NULL);
}
