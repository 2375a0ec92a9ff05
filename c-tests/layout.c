/* layout.c — the C view of every type crossing the boundary matches the Rust
 * side (libaether/src/ffi), and status codes have their documented values.
 * Compile-time checks only, plus one runtime check of the defaults.
 * Usage: layout */
#include <aether.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define OFFSET(T, f, n) _Static_assert(offsetof(T, f) == (n), #T "." #f " at offset " #n)

_Static_assert(sizeof(aether_topic_config) == 72, "aether_topic_config is 72 bytes");
OFFSET(aether_topic_config, struct_size, 0);
OFFSET(aether_topic_config, policy, 8);
OFFSET(aether_topic_config, ring_size, 16);
OFFSET(aether_topic_config, max_message, 24);
OFFSET(aether_topic_config, max_subscribers, 32);
/* Added in the second layout (the first was 40 bytes, this in its padding). */
OFFSET(aether_topic_config, durability, 36);
OFFSET(aether_topic_config, fsync, 40);
OFFSET(aether_topic_config, fsync_interval_ms, 44);
OFFSET(aether_topic_config, huge_pages, 48);
/* Added in the fourth layout (the third was 56 bytes: huge_pages, 4 of padding). */
OFFSET(aether_topic_config, retain_bytes, 56);
OFFSET(aether_topic_config, retain_seconds, 64);
_Static_assert(AETHER_RETAIN_DEFAULT == UINT64_MAX, "AETHER_RETAIN_DEFAULT is UINT64_MAX");

_Static_assert(sizeof(aether_subscriber_config) == 56, "aether_subscriber_config is 56 bytes");
OFFSET(aether_subscriber_config, struct_size, 0);
OFFSET(aether_subscriber_config, wait, 8);
OFFSET(aether_subscriber_config, spin, 12);
OFFSET(aether_subscriber_config, abandon_timeout_ns, 16);
OFFSET(aether_subscriber_config, delivery, 24);
/* Added in the third layout (the second was 32 bytes, `start` in its padding). */
OFFSET(aether_subscriber_config, start, 28);
OFFSET(aether_subscriber_config, start_value, 32);
OFFSET(aether_subscriber_config, durable_name, 40);
OFFSET(aether_subscriber_config, fill_gaps, 48);

_Static_assert(sizeof(aether_notice) == 152, "aether_notice is 152 bytes");
OFFSET(aether_notice, kind, 0);
OFFSET(aether_notice, topic, 4);
OFFSET(aether_notice, seq, 128);
OFFSET(aether_notice, count, 136);
OFFSET(aether_notice, len, 144);
_Static_assert(sizeof(((aether_notice *)0)->topic) == 121, "aether_notice.topic holds 120 bytes and a NUL");

_Static_assert(sizeof(aether_message) == 32, "aether_message is 32 bytes");
OFFSET(aether_message, data, 0);
OFFSET(aether_message, len, 8);
OFFSET(aether_message, seq, 16);
OFFSET(aether_message, timestamp_ns, 24);

_Static_assert(AETHER_OK == 0, "AETHER_OK");
_Static_assert(AETHER_E_INVALID == -1, "AETHER_E_INVALID");
_Static_assert(AETHER_E_TIMEOUT == -2, "AETHER_E_TIMEOUT");
_Static_assert(AETHER_E_NOT_FOUND == -3, "AETHER_E_NOT_FOUND");
_Static_assert(AETHER_E_EXISTS == -4, "AETHER_E_EXISTS");
_Static_assert(AETHER_E_PERMISSION == -5, "AETHER_E_PERMISSION");
_Static_assert(AETHER_E_TOO_LARGE == -6, "AETHER_E_TOO_LARGE");
_Static_assert(AETHER_E_UNAVAILABLE == -7, "AETHER_E_UNAVAILABLE");
_Static_assert(AETHER_E_SHUTDOWN == -8, "AETHER_E_SHUTDOWN");
_Static_assert(AETHER_E_CORRUPT == -9, "AETHER_E_CORRUPT");
_Static_assert(AETHER_E_OVERWRITTEN == -10, "AETHER_E_OVERWRITTEN");
_Static_assert(AETHER_E_PROTOCOL == -11, "AETHER_E_PROTOCOL");
_Static_assert(AETHER_E_LIMIT == -12, "AETHER_E_LIMIT");
_Static_assert(AETHER_E_NOMEM == -13, "AETHER_E_NOMEM");
_Static_assert(AETHER_E_IO == -14, "AETHER_E_IO");
_Static_assert(AETHER_E_INTERNAL == -15, "AETHER_E_INTERNAL");

_Static_assert(AETHER_POLICY_LOSSY == 0 && AETHER_POLICY_RELIABLE == 1, "aether_policy values");
_Static_assert(AETHER_WAIT_SPIN == 0 && AETHER_WAIT_YIELD == 1 && AETHER_WAIT_FUTEX == 2,
               "aether_wait values");
_Static_assert(AETHER_DELIVERY_SHM == 0 && AETHER_DELIVERY_MQUEUE == 1, "aether_delivery values");
_Static_assert(AETHER_DURABILITY_NONE == 0 && AETHER_DURABILITY_WAL == 1, "aether_durability values");
_Static_assert(AETHER_FSYNC_NEVER == 0 && AETHER_FSYNC_INTERVAL == 1 && AETHER_FSYNC_ALWAYS == 2,
               "aether_fsync values");
_Static_assert(AETHER_START_LATEST == 0 && AETHER_START_EARLIEST == 1 && AETHER_START_SEQ == 2 &&
                   AETHER_START_TIME == 3 && AETHER_START_DURABLE == 4,
               "aether_start values");
_Static_assert(AETHER_NOTICE_TOPIC_DELETED == 1 && AETHER_NOTICE_DRAINING == 2 &&
                   AETHER_NOTICE_LAGGED == 3 && AETHER_NOTICE_TOO_LARGE == 4 &&
                   AETHER_NOTICE_DROPPED == 5,
               "aether_notice_kind values");

int main(void) {
    int failed = 0;
    aether_topic_config t = aether_topic_config_default();
    if (t.struct_size != sizeof(aether_topic_config)) {
        fprintf(stderr, "layout: aether_topic_config_default().struct_size is %zu, expected %zu\n",
                t.struct_size, sizeof(aether_topic_config));
        failed = 1;
    }
    if (t.retain_bytes != AETHER_RETAIN_DEFAULT || t.retain_seconds != AETHER_RETAIN_DEFAULT) {
        fprintf(stderr, "layout: aether_topic_config_default() sets retain_* to %llu, %llu, not AETHER_RETAIN_DEFAULT\n",
                (unsigned long long)t.retain_bytes, (unsigned long long)t.retain_seconds);
        failed = 1;
    }
    aether_subscriber_config s = aether_subscriber_config_default();
    if (s.struct_size != sizeof(aether_subscriber_config)) {
        fprintf(stderr,
                "layout: aether_subscriber_config_default().struct_size is %zu, expected %zu\n",
                s.struct_size, sizeof(aether_subscriber_config));
        failed = 1;
    }
    const char *v = aether_version();
    if (v == NULL || strcmp(v, AETHER_VERSION) != 0) {
        fprintf(stderr, "layout: aether_version() is %s, the header is %s\n", v ? v : "NULL", AETHER_VERSION);
        failed = 1;
    }
#if AETHER_VERSION_NUMBER != AETHER_VERSION_MAJOR * 10000 + AETHER_VERSION_MINOR * 100 + AETHER_VERSION_PATCH
#error "AETHER_VERSION_NUMBER does not match AETHER_VERSION_MAJOR/MINOR/PATCH"
#endif
    if (failed)
        return 1;
    printf("layout ok (libaether %s)\n", v);
    return 0;
}
