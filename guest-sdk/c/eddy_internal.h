/*
 * Shared between the SDK's files; not part of the API in eddy.h.
 */
#ifndef EDDY_INTERNAL_H
#define EDDY_INTERNAL_H

#include "eddy.h"
#include "packed_operator.h"

/* The bindings name their own types after the world; the SDK's code predates that name. */
typedef packed_operator_list_u8_t operator_list_u8_t;
typedef packed_operator_string_t operator_string_t;
typedef packed_operator_option_list_u8_t operator_option_list_u8_t;
typedef packed_operator_list_tuple2_string_string_t operator_list_tuple2_string_string_t;
#define operator_list_u8_free packed_operator_list_u8_free
#define operator_option_list_u8_free packed_operator_option_list_u8_free
#define operator_string_dup packed_operator_string_dup
#define operator_string_free packed_operator_string_free
#define operator_list_tuple2_string_string_free packed_operator_list_tuple2_string_string_free

/* Length of an absent span (a missing key, the main output's port). */
#define ABSENT_LEN UINT32_MAX

/* realloc that traps (the host replaces the instance) instead of returning NULL. */
void *eddy_xrealloc(void *ptr, size_t size);

/* The stores' caches over one call (eddy_store.c). A call starts with the host's state
 * epoch when it has one (a packed batch); the caches keep their values only while that
 * epoch stays the same. `finish` hands every store's writes to the host (and with `keep`
 * false forgets the values); `discard` forgets everything after a failed call. */
void eddy_stores_begin(bool has_epoch, uint64_t epoch);
void eddy_stores_finish(bool keep);
void eddy_stores_discard(void);

#endif
