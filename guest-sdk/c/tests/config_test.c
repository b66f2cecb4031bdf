/* The typed config of the C SDK (eddy_config.c), natively: values that parse, values of
 * the wrong kind, and hostile text (torn lists, long numbers, escapes). The repository's
 * suite compiles and runs it with the host's clang (tests/it/typed_config.rs). */
#include "eddy.h"
#include <stdio.h>
#include <stdarg.h>
#include <assert.h>
#include <stdlib.h>
struct eddy_config { const char **kv; };
const char *eddy_config_get(const eddy_config *c, const char *name) {
    for (const char **p = c->kv; *p; p += 2) if (strcmp(*p, name) == 0) return p[1];
    return NULL;
}
static char msg[512];
eddy_status eddy_fatal(const char *f, ...) { va_list a; va_start(a, f); vsnprintf(msg, sizeof msg, f, a); va_end(a); return EDDY_FATAL; }
int main(void) {
    const char *kv[] = {"threshold", " 5", "ratio", "0.5", "on", "true", "window", "2m", "pages", "[\"home\", 7, true, 1.5, \"a\\\"b\\u00e9\\ud83d\\ude00\"]", "bad", "five",
                        "big", "99999999999999999999", "inf", "inf", "hex", "0x10", "d1", "5 parsecs", "d2", "99999999999999999d", "empty", "[ ]", "torn", "[\"a\"", "trail", "[1] x", "obj", "[{}]", "nul", "[", "long", "0.00000000000000000000000000000000000000000000000000000000000000000000001", "biglist", "[\"aaaaaaaaaaaaaaaaaaaa\", \"b\", 1, 2, 3]", NULL};
    eddy_config c = {kv};
    int64_t i; double f; bool b;
    assert(eddy_config_int(&c, "threshold", 1, &i) == EDDY_OK && i == 5);
    assert(eddy_config_int(&c, "missing", 7, &i) == EDDY_OK && i == 7);
    assert(eddy_config_float(&c, "ratio", 0, &f) == EDDY_OK && f == 0.5);
    assert(eddy_config_bool(&c, "on", false, &b) == EDDY_OK && b);
    assert(eddy_config_duration_ms(&c, "window", "1s", &i) == EDDY_OK && i == 120000);
    assert(eddy_config_duration_ms(&c, "missing", "250ms", &i) == EDDY_OK && i == 250);
    char **items; size_t n;
    assert(eddy_config_list(&c, "pages", &items, &n) == EDDY_OK && n == 5);
    assert(!strcmp(items[0], "home") && !strcmp(items[1], "7") && !strcmp(items[2], "true") && !strcmp(items[3], "1.5"));
    assert(!strcmp(items[4], "a\"b\xc3\xa9\xf0\x9f\x98\x80"));
    eddy_config_list_free(items, n);
    assert(eddy_config_list(&c, "empty", &items, &n) == EDDY_OK && n == 0);
    assert(eddy_config_list(&c, "missing", &items, &n) == EDDY_OK && n == 0);
    assert(!strcmp(eddy_config_string(&c, "missing", "x"), "x"));
    assert(eddy_config_int(&c, "bad", 0, &i) == EDDY_FATAL && strstr(msg, "`bad`") && strstr(msg, "\"five\"") && strstr(msg, "a whole number"));
    assert(eddy_config_float(&c, "bad", 0, &f) == EDDY_FATAL && strstr(msg, "a number"));
    assert(eddy_config_bool(&c, "bad", 0, &b) == EDDY_FATAL && strstr(msg, "true or false"));
    assert(eddy_config_duration_ms(&c, "bad", "1s", &i) == EDDY_FATAL && strstr(msg, "a duration"));
    assert(eddy_config_list(&c, "bad", &items, &n) == EDDY_FATAL && strstr(msg, "a list"));
    assert(eddy_config_int(&c, "big", 0, &i) == EDDY_FATAL);
    assert(eddy_config_float(&c, "inf", 0, &f) == EDDY_FATAL);
    assert(eddy_config_float(&c, "hex", 0, &f) == EDDY_FATAL);
    assert(eddy_config_int(&c, "hex", 0, &i) == EDDY_FATAL);
    assert(eddy_config_duration_ms(&c, "d1", "1s", &i) == EDDY_FATAL);
    assert(eddy_config_duration_ms(&c, "d2", "1s", &i) == EDDY_FATAL);
    const char *bads[] = {"torn", "trail", "obj", "nul", "threshold"}; for (int k = 0; k < 5; k++) assert(eddy_config_list(&c, bads[k], &items, &n) == EDDY_FATAL);
    assert(eddy_config_float(&c, "long", 0, &f) == EDDY_OK && f > 0 && f < 1e-69);
    assert(eddy_config_list(&c, "biglist", &items, &n) == EDDY_OK && n == 5 && !strcmp(items[1], "b"));
    eddy_config_list_free(items, n);
    return 0;
}
