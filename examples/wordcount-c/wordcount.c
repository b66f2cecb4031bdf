/*
 * Word count in C, with exactly the semantics of examples/wordcount (Rust): words are
 * runs of non-whitespace (ASCII whitespace separates them) with ASCII punctuation
 * trimmed from both ends; `config.lowercase = "true"` lowercases ASCII letters; counts
 * are 8-byte little-endian integers in the store `counts`.
 */
#include "eddy.h"

#include <stdio.h>
#include <stdlib.h>

static bool lowercase;

/* Rust's is_ascii_whitespace: space, tab, line feed, form feed, carriage return. */
static bool is_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

static bool is_punct(uint8_t c) {
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}

/* Checks UTF-8 the way Rust's str does, so a bad record fails as it does there. */
static bool valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t need;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xc2 && c < 0xe0) { need = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c < 0xf0) { need = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c < 0xf5) { need = 3; cp = c & 0x07; }
        else return false;
        if (i + need >= n) return false;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += need + 1;
    }
    return true;
}

eddy_status eddy_init(const eddy_config *config) {
    return eddy_config_bool(config, "lowercase", false, &lowercase);
}

eddy_status eddy_process(const eddy_event *event, eddy_ctx *ctx) {
    const uint8_t *text = event->value.ptr;
    size_t len = event->value.len;
    if (!valid_utf8(text, len)) return eddy_bad_input("value is not UTF-8");
    eddy_store *counts = eddy_store_open(ctx, "counts");
    if (counts == NULL) return EDDY_FATAL;

    uint8_t word[256];
    uint8_t *buf = word;
    size_t cap = sizeof word;
    size_t i = 0;
    eddy_status status = EDDY_OK;
    while (i < len && status == EDDY_OK) {
        while (i < len && is_space(text[i])) i++;
        size_t start = i;
        while (i < len && !is_space(text[i])) i++;
        size_t end = i;
        while (start < end && is_punct(text[start])) start++;
        while (end > start && is_punct(text[end - 1])) end--;
        if (start == end) continue;

        size_t n = end - start;
        if (n > cap) {
            cap = n;
            buf = realloc(buf == word ? NULL : buf, cap);
            if (buf == NULL) return eddy_fatal("out of memory");
        }
        for (size_t k = 0; k < n; k++) {
            uint8_t c = text[start + k];
            buf[k] = lowercase && c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
        }
        int64_t count;
        status = eddy_increment(counts, eddy_bytes_of(buf, n), 1, &count);
        if (status == EDDY_OK) {
            char digits[24];
            int d = snprintf(digits, sizeof digits, "%lld", (long long)count);
            eddy_emit(ctx, eddy_bytes_of(buf, n), eddy_bytes_of(digits, (size_t)d));
        }
    }
    if (buf != word) free(buf);
    return status;
}
