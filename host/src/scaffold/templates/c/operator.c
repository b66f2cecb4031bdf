/* {{name}}: counts events per key and emits (key, "<greeting> #<count>"). */
#include "eddy.h"

#include <stdio.h>

static const char *greeting = "hello";

eddy_status eddy_init(const eddy_config *config) {
    const char *g = eddy_config_get(config, "greeting");
    if (g != NULL) greeting = g;
    return EDDY_OK;
}

eddy_status eddy_process(const eddy_event *event, eddy_ctx *ctx) {
    if (eddy_is_absent(event->key)) return eddy_bad_input("events need a key");
    eddy_store *counts = eddy_store_open(ctx, "counts");
    if (counts == NULL) return EDDY_FATAL;
    int64_t n;
    eddy_status status = eddy_increment(counts, event->key, 1, &n);
    if (status != EDDY_OK) return status;
    char text[256];
    int len = snprintf(text, sizeof text, "%s #%lld", greeting, (long long)n);
    eddy_emit(ctx, event->key, eddy_bytes_of(text, len < (int)sizeof text ? (size_t)len : sizeof text - 1));
    return EDDY_OK;
}
