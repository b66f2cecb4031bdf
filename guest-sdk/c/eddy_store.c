/*
 * Stores, with their values cached inside the component: a key is read from the host
 * once; reads, writes and increments then work on the cached value, and the writes go to
 * the host in one `write-packed` call when the call ends (and before a scan or a range
 * delete, which the host answers). The cache outlives a batch while the host's state
 * epoch stays the same, that is while the host forgot none of this instance's writes
 * (eddy_stores_begin); a failed call forgets it. Exactly-once stays the host's business:
 * it commits every write with its batch, or none.
 */
#include "eddy_internal.h"

#include <stdio.h>
#include <stdlib.h>

#define SCAN_PAGE 256
/* Most entries a store's cache holds; past it, or past MAX_BYTES, the cache writes out and
 * keeps only the entries used again since they were cached (the hot keys). */
#define MAX_ENTRIES 65536
/* Most bytes of keys and values, with SLOT_BYTES per entry, a store's cache holds. */
#define MAX_BYTES (8u << 20)
/* What an entry costs beyond its key and value, about: two table slots (the table is at
 * most half full) and the allocations' overhead. */
#define SLOT_BYTES 128

typedef struct {
    uint8_t *key; /* NULL: an empty slot */
    uint32_t key_len;
    uint32_t hash;
    uint8_t *value;
    uint32_t value_len, value_cap;
    bool present; /* false: the key has no value (absent, or deleted) */
    bool dirty;   /* written since the last write-out */
    bool used;    /* read or written again since cached (or since the last eviction) */
} slot;

typedef struct {
    slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t len;
    size_t bytes;
    uint32_t *dirty; /* indices of dirty slots, each once */
    size_t dirty_len, dirty_cap;
} cache;

struct eddy_store {
    char *name;
    eddy_operator_state_own_store_t handle;
    cache cache;
    struct eddy_store *next;
};

static struct eddy_store *stores;

static operator_list_u8_t as_list(eddy_bytes b) {
    return (operator_list_u8_t){(uint8_t *)(b.ptr ? b.ptr : (const uint8_t *)""), b.len};
}

static eddy_operator_state_borrow_store_t borrow(eddy_store *s) {
    return eddy_operator_state_borrow_store(s->handle);
}

static const char *state_error_text(eddy_operator_state_state_error_t *e, char *buf, size_t cap) {
    operator_string_t *m = e->tag == EDDY_OPERATOR_STATE_STATE_ERROR_NOT_A_COUNTER ? &e->val.not_a_counter
                                                                                   : &e->val.invalid_argument;
    snprintf(buf, cap, "%.*s", (int)m->len, (const char *)m->ptr);
    eddy_operator_state_state_error_free(e);
    return buf;
}

/* ---- the cache's table ------------------------------------------------------------------ */

static uint32_t hash_bytes(eddy_bytes k) {
    /* FNV-1a folded through a multiply: keys are short and this is not a defence against
     * keys crafted to collide (those would slow only this instance, within its deadline). */
    uint64_t h = 0xcbf29ce484222325ull ^ k.len;
    for (size_t i = 0; i < k.len; i++) h = (h ^ k.ptr[i]) * 0x100000001b3ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return (uint32_t)(h ^ (h >> 32));
}

/* The slot holding `key`, or the empty slot where it would go (the table is never full). */
static size_t find(const cache *c, eddy_bytes key, uint32_t hash) {
    size_t mask = c->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const slot *s = &c->slots[i];
        if (s->key == NULL) return i;
        if (s->hash == hash && s->key_len == key.len && memcmp(s->key, key.ptr, key.len) == 0) return i;
    }
}

static void free_slot(slot *s) {
    free(s->key);
    free(s->value);
    memset(s, 0, sizeof *s);
}

/* Moves every slot `keep` accepts into a table of `cap` slots (the others are freed),
 * and lists the dirty ones again, since their indices change. */
static void rebuild(cache *c, size_t cap, bool only_used) {
    slot *old = c->slots;
    size_t old_cap = c->cap;
    c->slots = calloc(cap, sizeof *c->slots);
    if (c->slots == NULL) abort();
    c->cap = cap;
    c->len = 0;
    c->bytes = 0;
    c->dirty_len = 0;
    for (size_t i = 0; i < old_cap; i++) {
        slot *s = &old[i];
        if (s->key == NULL) continue;
        if (only_used && !s->used) {
            free_slot(s);
            continue;
        }
        if (only_used) s->used = false;
        size_t j = find(c, eddy_bytes_of(s->key, s->key_len), s->hash);
        c->slots[j] = *s;
        c->len++;
        c->bytes += SLOT_BYTES + s->key_len + s->value_cap;
        if (s->dirty) {
            if (c->dirty_len == c->dirty_cap) {
                c->dirty_cap = c->dirty_cap ? c->dirty_cap * 2 : 64;
                c->dirty = eddy_xrealloc(c->dirty, c->dirty_cap * sizeof *c->dirty);
            }
            c->dirty[c->dirty_len++] = (uint32_t)j;
        }
    }
    free(old);
}

/* Forgets every entry. A large table is freed, not kept: timer calls start from an empty
 * cache, and sweeping a big empty table for each of them would cost more than regrowing. */
static void clear(cache *c) {
    if (c->len == 0 && c->cap <= 64) return;
    for (size_t i = 0; c->len && i < c->cap; i++) {
        if (c->slots[i].key) free_slot(&c->slots[i]), c->len--;
    }
    if (c->cap > 64) {
        free(c->slots);
        c->slots = NULL;
        c->cap = 0;
    }
    c->len = c->bytes = c->dirty_len = 0;
}

/* Hands every write since the last write-out to the host, in one call. */
static void write_out(eddy_store *store) {
    cache *c = &store->cache;
    if (c->dirty_len == 0) return;
    size_t data_len = 0;
    for (size_t i = 0; i < c->dirty_len; i++) {
        const slot *s = &c->slots[c->dirty[i]];
        data_len += s->key_len + (s->present ? s->value_len : 0);
    }
    uint8_t *data = eddy_xrealloc(NULL, data_len);
    uint8_t *entries = eddy_xrealloc(NULL, c->dirty_len * 16);
    size_t at = 0;
    for (size_t i = 0; i < c->dirty_len; i++) {
        slot *s = &c->slots[c->dirty[i]];
        uint32_t words[4] = {(uint32_t)at, s->key_len, 0, ABSENT_LEN};
        memcpy(data + at, s->key, s->key_len);
        at += s->key_len;
        if (s->present) {
            words[2] = (uint32_t)at;
            words[3] = s->value_len;
            if (s->value_len) memcpy(data + at, s->value, s->value_len);
            at += s->value_len;
        }
        for (int w = 0; w < 4; w++) {
            uint8_t *p = entries + i * 16 + w * 4;
            p[0] = (uint8_t)words[w], p[1] = (uint8_t)(words[w] >> 8), p[2] = (uint8_t)(words[w] >> 16),
            p[3] = (uint8_t)(words[w] >> 24);
        }
        s->dirty = false;
    }
    eddy_operator_state_packed_writes_t writes = {{data, data_len}, {entries, c->dirty_len * 16}};
    eddy_operator_state_method_store_write_packed(borrow(store), &writes);
    free(data);
    free(entries);
    c->dirty_len = 0;
}

/* Makes room for one more entry of `size` bytes: grows the table, or, past the bounds,
 * writes out and keeps the hot entries (or none, when they alone fill half the cache). */
static void make_room(eddy_store *store, size_t size) {
    cache *c = &store->cache;
    if (c->len + 1 > MAX_ENTRIES || c->bytes + SLOT_BYTES + size > MAX_BYTES) {
        write_out(store);
        rebuild(c, c->cap, true);
        if (c->len >= MAX_ENTRIES / 2 || c->bytes + SLOT_BYTES + size > MAX_BYTES / 2) clear(c);
    }
    if ((c->len + 1) * 2 > c->cap) rebuild(c, c->cap ? c->cap * 2 : 64, false);
}

/* Sets the slot's value (EDDY_ABSENT: none), counting its buffer in the cache's bytes. */
static void set_value(cache *c, slot *s, eddy_bytes value) {
    s->present = value.ptr != NULL;
    size_t len = s->present ? value.len : 0;
    if (len > s->value_cap || (len < s->value_cap / 4 && s->value_cap > 64)) {
        c->bytes -= s->value_cap;
        s->value = len ? eddy_xrealloc(s->value, len) : (free(s->value), NULL);
        s->value_cap = (uint32_t)len;
        c->bytes += s->value_cap;
    }
    if (len) memcpy(s->value, value.ptr, len);
    s->value_len = (uint32_t)len;
}

/* After a write made a value grow past the bound: writes out and starts over. */
static void check_bound(eddy_store *store) {
    if (store->cache.bytes > MAX_BYTES) {
        write_out(store);
        clear(&store->cache);
    }
}

/* Inserts `key` (not cached yet) with `value` (EDDY_ABSENT: no value) and returns its slot. */
static slot *insert(eddy_store *store, eddy_bytes key, uint32_t hash, eddy_bytes value) {
    make_room(store, key.len + value.len);
    cache *c = &store->cache;
    slot *s = &c->slots[find(c, key, hash)];
    s->key = eddy_xrealloc(NULL, key.len);
    if (key.len) memcpy(s->key, key.ptr, key.len);
    s->key_len = (uint32_t)key.len;
    s->hash = hash;
    c->len++;
    c->bytes += SLOT_BYTES + key.len;
    set_value(c, s, value);
    return s;
}

/* The slot of `key`, read from the host on a miss. */
static slot *lookup(eddy_store *store, eddy_bytes key) {
    cache *c = &store->cache;
    uint32_t hash = hash_bytes(key);
    if (c->cap) {
        slot *s = &c->slots[find(c, key, hash)];
        if (s->key) {
            s->used = true;
            return s;
        }
    }
    operator_list_u8_t k = as_list(key), v;
    bool found = eddy_operator_state_method_store_get(borrow(store), &k, &v);
    slot *s = insert(store, key, hash, found ? eddy_bytes_of(v.ptr, v.len) : EDDY_ABSENT);
    if (found) operator_list_u8_free(&v);
    return s;
}

static void mark_dirty(eddy_store *store, slot *s) {
    cache *c = &store->cache;
    if (s->dirty) return;
    s->dirty = true;
    if (c->dirty_len == c->dirty_cap) {
        c->dirty_cap = c->dirty_cap ? c->dirty_cap * 2 : 64;
        c->dirty = eddy_xrealloc(c->dirty, c->dirty_cap * sizeof *c->dirty);
    }
    c->dirty[c->dirty_len++] = (uint32_t)(s - c->slots);
}

/* Writes `value` (EDDY_ABSENT: a delete) under `key`. */
static void put(eddy_store *store, eddy_bytes key, eddy_bytes value) {
    cache *c = &store->cache;
    uint32_t hash = hash_bytes(key);
    slot *s = NULL;
    if (c->cap) {
        s = &c->slots[find(c, key, hash)];
        if (s->key == NULL) s = NULL;
    }
    if (s) {
        s->used = true;
        set_value(c, s, value);
    } else {
        s = insert(store, key, hash, value);
    }
    mark_dirty(store, s);
    check_bound(store);
}

/* ---- the API ------------------------------------------------------------------------------ */

eddy_store *eddy_store_open(eddy_ctx *ctx, const char *name) {
    (void)ctx;
    for (struct eddy_store *s = stores; s; s = s->next) {
        if (strcmp(s->name, name) == 0) return s;
    }
    operator_string_t wit_name = {(uint8_t *)name, strlen(name)};
    eddy_operator_state_own_store_t handle;
    eddy_operator_state_state_error_t err;
    if (!eddy_operator_state_static_store_open(&wit_name, &handle, &err)) {
        char text[512];
        eddy_fatal("cannot open store %s: %s", name, state_error_text(&err, text, sizeof text));
        return NULL;
    }
    struct eddy_store *s = eddy_xrealloc(NULL, sizeof *s);
    memset(s, 0, sizeof *s);
    s->name = strdup(name);
    s->handle = handle;
    s->next = stores;
    stores = s;
    return s;
}

/* eddy_get's result: a copy, so writes and evictions cannot move it before the next get. */
static uint8_t *last_value;
static size_t last_value_cap;

eddy_bytes eddy_get(eddy_store *store, eddy_bytes key) {
    slot *s = lookup(store, key);
    if (!s->present) return EDDY_ABSENT;
    if (s->value_len > last_value_cap) {
        last_value = eddy_xrealloc(last_value, s->value_len);
        last_value_cap = s->value_len;
    }
    if (s->value_len) memcpy(last_value, s->value, s->value_len);
    return eddy_bytes_of(last_value ? last_value : (const uint8_t *)"", s->value_len);
}

void eddy_set(eddy_store *store, eddy_bytes key, eddy_bytes value) {
    put(store, key, value.ptr ? value : eddy_bytes_of("", 0));
}

void eddy_delete(eddy_store *store, eddy_bytes key) {
    put(store, key, EDDY_ABSENT);
}

void eddy_delete_range(eddy_store *store, eddy_bytes start, eddy_bytes end) {
    write_out(store);
    clear(&store->cache);
    operator_list_u8_t s = as_list(start), e = as_list(end);
    eddy_operator_state_method_store_delete_range(borrow(store), &s, end.ptr ? &e : NULL);
}

eddy_status eddy_increment(eddy_store *store, eddy_bytes key, int64_t delta, int64_t *out) {
    slot *s = lookup(store, key);
    if (s->present && s->value_len != 8) {
        /* Not a counter: the host says so, in its own words, and changes nothing, so the
         * cached value stays right. */
        write_out(store);
        operator_list_u8_t k = as_list(key);
        eddy_operator_state_state_error_t err;
        if (eddy_operator_state_method_store_increment(borrow(store), &k, delta, out, &err)) return EDDY_OK;
        bool not_a_counter = err.tag == EDDY_OPERATOR_STATE_STATE_ERROR_NOT_A_COUNTER;
        char text[512];
        state_error_text(&err, text, sizeof text);
        return not_a_counter ? eddy_bad_input("store %s: %s", store->name, text)
                             : eddy_fatal("store %s: %s", store->name, text);
    }
    uint64_t n = 0;
    for (int i = 7; s->present && i >= 0; i--) n = (n << 8) | s->value[i];
    n += (uint64_t)delta; /* wraps, as the host's counters do */
    uint8_t bytes[8];
    for (int i = 0; i < 8; i++) bytes[i] = (uint8_t)(n >> (8 * i));
    set_value(&store->cache, s, eddy_bytes_of(bytes, 8));
    mark_dirty(store, s);
    *out = (int64_t)n;
    check_bound(store);
    return EDDY_OK;
}

/* The bytes of a span of a scan page; absent when it does not fit (a host bug). */
static eddy_bytes in_page(const operator_list_u8_t *data, eddy_operator_types_span_t s) {
    if (s.len == ABSENT_LEN || (uint64_t)s.offset + s.len > data->len) return EDDY_ABSENT;
    return eddy_bytes_of(data->ptr + s.offset, s.len);
}

void eddy_scan(eddy_store *store, eddy_bytes start, eddy_bytes end, eddy_scan_visitor visit, void *user) {
    operator_list_u8_t s = as_list(start), e = as_list(end);
    operator_option_list_u8_t cont = {false, {NULL, 0}};
    for (;;) {
        /* The host answers from its state: give it the writes made since. */
        write_out(store);
        eddy_operator_state_scan_page_t page;
        eddy_operator_state_method_store_scan(borrow(store), &s, end.ptr ? &e : NULL, SCAN_PAGE,
                                              cont.is_some ? &cont.val : NULL, &page);
        operator_option_list_u8_free(&cont);
        bool go_on = true;
        for (size_t i = 0; go_on && i < page.entries.entries.len; i++) {
            eddy_operator_types_kv_meta_t m = page.entries.entries.ptr[i];
            go_on = visit(in_page(&page.entries.data, m.key), in_page(&page.entries.data, m.value), user);
        }
        eddy_operator_types_kv_batch_free(&page.entries);
        cont = page.continuation;
        if (!go_on || !cont.is_some) {
            operator_option_list_u8_free(&cont);
            return;
        }
    }
}

/* ---- the caches over a call ------------------------------------------------------------------ */

static bool epoch_valid;
static uint64_t cache_epoch;

void eddy_stores_begin(bool has_epoch, uint64_t epoch) {
    if (!has_epoch || !epoch_valid || epoch != cache_epoch) {
        for (struct eddy_store *s = stores; s; s = s->next) clear(&s->cache);
    }
    epoch_valid = has_epoch;
    cache_epoch = epoch;
}

void eddy_stores_finish(bool keep) {
    for (struct eddy_store *s = stores; s; s = s->next) {
        write_out(s);
        if (!keep) clear(&s->cache);
    }
    if (!keep) epoch_valid = false;
}

void eddy_stores_discard(void) {
    for (struct eddy_store *s = stores; s; s = s->next) clear(&s->cache);
    epoch_valid = false;
}
