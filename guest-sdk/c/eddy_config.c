/*
 * Typed access to the operator's config: each accessor parses a value or returns
 * EDDY_FATAL with a message naming the key, the value and what was expected (so `init`
 * fails with it). Arrays and tables of the spec arrive as JSON text.
 */
#include "eddy.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static eddy_status invalid(const char *name, const char *raw, const char *expected) {
    return eddy_fatal("config `%s` = \"%s\": expected %s", name, raw, expected);
}

/* `raw` without surrounding whitespace, as a new string (NULL when out of memory). */
static char *trimmed(const char *raw) {
    while (*raw == ' ' || *raw == '\t' || *raw == '\n' || *raw == '\r') raw++;
    size_t n = strlen(raw);
    while (n && (raw[n - 1] == ' ' || raw[n - 1] == '\t' || raw[n - 1] == '\n' || raw[n - 1] == '\r')) n--;
    char *out = malloc(n + 1);
    if (out == NULL) return NULL;
    memcpy(out, raw, n);
    out[n] = '\0';
    return out;
}

eddy_status eddy_config_bool(const eddy_config *c, const char *name, bool fallback, bool *out) {
    const char *raw = eddy_config_get(c, name);
    if (raw == NULL) {
        *out = fallback;
        return EDDY_OK;
    }
    char *v = trimmed(raw);
    bool yes = v != NULL && strcmp(v, "true") == 0, no = v != NULL && strcmp(v, "false") == 0;
    free(v);
    if (!yes && !no) return invalid(name, raw, "true or false");
    *out = yes;
    return EDDY_OK;
}

eddy_status eddy_config_int(const eddy_config *c, const char *name, int64_t fallback, int64_t *out) {
    const char *raw = eddy_config_get(c, name);
    if (raw == NULL) {
        *out = fallback;
        return EDDY_OK;
    }
    char *v = trimmed(raw), *end = NULL;
    errno = 0;
    long long n = v != NULL && v[0] != '\0' && v[0] != ' ' ? strtoll(v, &end, 10) : 0;
    bool ok = end != NULL && *end == '\0' && errno != ERANGE;
    free(v);
    if (!ok) return invalid(name, raw, "a whole number, such as 5");
    *out = n;
    return EDDY_OK;
}

eddy_status eddy_config_float(const eddy_config *c, const char *name, double fallback, double *out) {
    const char *raw = eddy_config_get(c, name);
    if (raw == NULL) {
        *out = fallback;
        return EDDY_OK;
    }
    /* strtod also reads hex, "inf" and "nan": only decimal notation is a number here. */
    char *v = trimmed(raw), *end = NULL;
    double f = 0;
    if (v != NULL && v[0] != '\0' && strspn(v, "+-0123456789.eE") == strlen(v)) f = strtod(v, &end);
    bool ok = end != NULL && *end == '\0' && isfinite(f);
    free(v);
    if (!ok) return invalid(name, raw, "a number, such as 0.5");
    *out = f;
    return EDDY_OK;
}

const char *eddy_config_string(const eddy_config *c, const char *name, const char *fallback) {
    const char *raw = eddy_config_get(c, name);
    return raw == NULL ? fallback : raw;
}

eddy_status eddy_config_duration_ms(const eddy_config *c, const char *name, const char *fallback, int64_t *out) {
    const char *raw = eddy_config_get(c, name);
    if (raw == NULL) raw = fallback;
    const char *how = "a duration such as \"250ms\", \"5s\", \"1m\", \"2h\" or \"1d\"";
    char *v = trimmed(raw);
    if (v == NULL || v[0] < '0' || v[0] > '9') {
        free(v);
        return invalid(name, raw, how);
    }
    char *unit;
    errno = 0;
    unsigned long long n = strtoull(v, &unit, 10);
    while (*unit == ' ' || *unit == '\t') unit++;
    int64_t scale = strcmp(unit, "ms") == 0  ? 1
                    : strcmp(unit, "s") == 0 ? 1000
                    : strcmp(unit, "m") == 0 ? 60000
                    : strcmp(unit, "h") == 0 ? 3600000
                    : strcmp(unit, "d") == 0 ? 86400000
                                             : 0;
    bool ok = scale != 0 && errno != ERANGE && n <= (unsigned long long)(INT64_MAX / (scale ? scale : 1));
    free(v);
    if (!ok) return invalid(name, raw, how);
    *out = (int64_t)n * scale;
    return EDDY_OK;
}

/* ---- lists: a JSON array of strings, numbers and booleans --------------------------- */

static void push_utf8(char *out, size_t *n, uint32_t c) {
    if (c < 0x80) {
        out[(*n)++] = (char)c;
    } else if (c < 0x800) {
        out[(*n)++] = (char)(0xc0 | (c >> 6));
        out[(*n)++] = (char)(0x80 | (c & 63));
    } else if (c < 0x10000) {
        out[(*n)++] = (char)(0xe0 | (c >> 12));
        out[(*n)++] = (char)(0x80 | ((c >> 6) & 63));
        out[(*n)++] = (char)(0x80 | (c & 63));
    } else {
        out[(*n)++] = (char)(0xf0 | (c >> 18));
        out[(*n)++] = (char)(0x80 | ((c >> 12) & 63));
        out[(*n)++] = (char)(0x80 | ((c >> 6) & 63));
        out[(*n)++] = (char)(0x80 | (c & 63));
    }
}

static bool hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0) return false;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return true;
}

/* One JSON string starting at the quote `*p`, decoded into `out` (room for as many bytes
 * as the text has); advances `*p` past it. */
static bool json_string(const char **p, char *out) {
    const char *s = *p + 1;
    size_t n = 0;
    while (*s != '"') {
        if (*s == '\0' || (unsigned char)*s < 0x20) return false;
        if (*s != '\\') {
            out[n++] = *s++;
            continue;
        }
        s++;
        uint32_t c;
        switch (*s) {
            case '"': case '\\': case '/': out[n++] = *s; s++; continue;
            case 'b': out[n++] = '\b'; s++; continue;
            case 'f': out[n++] = '\f'; s++; continue;
            case 'n': out[n++] = '\n'; s++; continue;
            case 'r': out[n++] = '\r'; s++; continue;
            case 't': out[n++] = '\t'; s++; continue;
            case 'u': break;
            default: return false;
        }
        if (!hex4(s + 1, &c)) return false;
        s += 5;
        if (c >= 0xd800 && c < 0xdc00) {
            uint32_t low;
            if (s[0] != '\\' || s[1] != 'u' || !hex4(s + 2, &low) || low < 0xdc00 || low > 0xdfff) return false;
            c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
            s += 6;
        } else if (c >= 0xdc00 && c <= 0xdfff) {
            return false;
        }
        push_utf8(out, &n, c);
    }
    out[n] = '\0';
    *p = s + 1;
    return true;
}

static const char *skip_space(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

void eddy_config_list_free(char **items, size_t count) {
    for (size_t i = 0; i < count; i++) free(items[i]);
    free(items);
}

eddy_status eddy_config_list(const eddy_config *c, const char *name, char ***items, size_t *count) {
    *items = NULL;
    *count = 0;
    const char *raw = eddy_config_get(c, name);
    if (raw == NULL) return EDDY_OK;
    const char *p = skip_space(raw);
    char **list = NULL;
    size_t n = 0;
    if (*p != '[') goto bad;
    p = skip_space(p + 1);
    while (*p != ']') {
        if (n > 0) {
            if (*p != ',') goto bad;
            p = skip_space(p + 1);
        }
        char *item = malloc(strlen(p) + 1);
        char **grown = item == NULL ? NULL : realloc(list, (n + 1) * sizeof *list);
        if (grown == NULL) {
            free(item);
            eddy_config_list_free(list, n);
            return eddy_fatal("config `%s`: out of memory reading the list", name);
        }
        list = grown;
        list[n++] = item;
        if (*p == '"') {
            if (!json_string(&p, item)) goto bad;
        } else if (strncmp(p, "true", 4) == 0 || strncmp(p, "false", 5) == 0) {
            size_t len = *p == 't' ? 4 : 5;
            memcpy(item, p, len);
            item[len] = '\0';
            p += len;
        } else {
            /* A number: its JSON text, as the other SDKs give it. */
            size_t len = strspn(p, "+-0123456789.eE");
            char *end;
            if (len == 0) goto bad;
            memcpy(item, p, len);
            item[len] = '\0';
            strtod(item, &end);
            if (*end != '\0') goto bad;
            p += len;
        }
        /* Each item keeps only its own bytes (it was given room for the rest of the text). */
        char *fit = realloc(item, strlen(item) + 1);
        if (fit != NULL) list[n - 1] = fit;
        p = skip_space(p);
    }
    if (*skip_space(p + 1) != '\0') goto bad;
    *items = list;
    *count = n;
    return EDDY_OK;
bad:
    eddy_config_list_free(list, n);
    return invalid(name, raw, "a list of strings, numbers or booleans, such as [\"a\", \"b\"]");
}
