/* errors.c — every error path of the C API, against a running broker.
 * Usage: errors SOCKET
 *
 * Each check prints the line, the call, what it returned and what was
 * expected when it fails; the program goes on and exits 1 if any failed.
 * Topics are named errors-<pid>-* and deleted at the end. */
#define _GNU_SOURCE /* sched_getcpu, CPU_* */
#include <aether.h>

#include <sched.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures;

static const char *status_name(int rc) {
    static const char *names[] = {
        "AETHER_OK",          "AETHER_E_INVALID",  "AETHER_E_TIMEOUT",     "AETHER_E_NOT_FOUND",
        "AETHER_E_EXISTS",    "AETHER_E_PERMISSION", "AETHER_E_TOO_LARGE", "AETHER_E_UNAVAILABLE",
        "AETHER_E_SHUTDOWN",  "AETHER_E_CORRUPT",  "AETHER_E_OVERWRITTEN", "AETHER_E_PROTOCOL",
        "AETHER_E_LIMIT",     "AETHER_E_NOMEM",    "AETHER_E_IO",          "AETHER_E_INTERNAL",
    };
    return rc <= 0 && rc >= -15 ? names[-rc] : "(unknown status)";
}

/* A call must return `want`; a failing one must also leave a last error. */
static void expect_rc(int line, const char *call, int got, int want) {
    if (got != want) {
        fprintf(stderr, "errors.c:%d: %s returned %s (%d), expected %s (%d); last error: %s\n",
                line, call, status_name(got), got, status_name(want), want, aether_last_error());
        failures++;
    } else if (want != AETHER_OK) {
        const char *e = aether_last_error();
        if (e == NULL || e[0] == '\0') {
            fprintf(stderr, "errors.c:%d: %s failed as expected but aether_last_error() is %s\n",
                    line, call, e == NULL ? "NULL" : "empty");
            failures++;
        }
    }
}
#define EXPECT(call, want) expect_rc(__LINE__, #call, (call), (want))
#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "errors.c:%d: check failed: %s\n", __LINE__, #cond);         \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Names of every topic this program may have created, deleted at the end. */
static char topic[128], small[128], bad[128], longest[128], missing[128], grown_topic[128], timed[128], laps[128];

static void null_arguments(aether_client *c, aether_publisher *p, aether_subscriber *s) {
    /* Out-parameters are written only on success: sentinels must survive. */
    char sentinel;
    aether_publisher *po = (aether_publisher *)&sentinel;
    aether_subscriber *so = (aether_subscriber *)&sentinel;
    uint8_t buf[16] = {0};
    size_t len = 12345;
    void *loan = &sentinel;
    aether_message m;
    memset(&m, 0, sizeof m);

    EXPECT(aether_connect("/nonexistent/aether.sock", NULL), AETHER_E_INVALID);
    EXPECT(aether_topic_create(NULL, bad, NULL), AETHER_E_INVALID);
    EXPECT(aether_topic_create(c, NULL, NULL), AETHER_E_INVALID);
    EXPECT(aether_topic_delete(NULL, topic), AETHER_E_INVALID);
    EXPECT(aether_topic_delete(c, NULL), AETHER_E_INVALID);

    EXPECT(aether_publisher_open(NULL, topic, &po), AETHER_E_INVALID);
    EXPECT(aether_publisher_open(c, NULL, &po), AETHER_E_INVALID);
    EXPECT(aether_publisher_open(c, topic, NULL), AETHER_E_INVALID);
    CHECK(po == (aether_publisher *)&sentinel);
    EXPECT(aether_subscriber_open(NULL, topic, NULL, &so), AETHER_E_INVALID);
    EXPECT(aether_subscriber_open(c, NULL, NULL, &so), AETHER_E_INVALID);
    EXPECT(aether_subscriber_open(c, topic, NULL, NULL), AETHER_E_INVALID);
    CHECK(so == (aether_subscriber *)&sentinel);

    EXPECT(aether_publish(NULL, buf, 1), AETHER_E_INVALID);
    EXPECT(aether_publish(p, NULL, 5), AETHER_E_INVALID);
    EXPECT(aether_loan(NULL, 1, &loan), AETHER_E_INVALID);
    EXPECT(aether_loan(p, 1, NULL), AETHER_E_INVALID);
    CHECK(loan == &sentinel);
    EXPECT(aether_commit(NULL, 0), AETHER_E_INVALID);
    EXPECT(aether_abort(NULL), AETHER_E_INVALID);
    EXPECT(aether_publisher_set_timeout(NULL, 0), AETHER_E_INVALID);
    EXPECT(aether_publisher_set_large_laps(NULL, AETHER_LARGE_LAPS_SHORT), AETHER_E_INVALID);
    EXPECT(aether_publisher_set_large_laps(p, 4), AETHER_E_INVALID);
    CHECK(strstr(aether_last_error(), "unknown large_laps value 4") != NULL);
    EXPECT(aether_publisher_set_timestamps(NULL, 1), AETHER_E_INVALID);
    EXPECT(aether_publisher_set_timestamps(p, 2), AETHER_E_INVALID);
    CHECK(strstr(aether_last_error(), "timestamps must be 0 or 1, not 2") != NULL);

    EXPECT(aether_receive(NULL, buf, sizeof buf, &len, 0), AETHER_E_INVALID);
    EXPECT(aether_receive(s, buf, sizeof buf, NULL, 0), AETHER_E_INVALID);
    EXPECT(aether_receive(s, NULL, sizeof buf, &len, 0), AETHER_E_INVALID);
    CHECK(len == 12345);
    EXPECT(aether_receive_view(NULL, &m, 0), AETHER_E_INVALID);
    EXPECT(aether_receive_view(s, NULL, 0), AETHER_E_INVALID);
    EXPECT(aether_release(NULL, &m), AETHER_E_INVALID);
    EXPECT(aether_release(s, NULL), AETHER_E_INVALID);
    uint64_t broker = 7, oseq = 7;
    EXPECT(aether_subscriber_origin(NULL, &broker, &oseq), AETHER_E_INVALID);
    EXPECT(aether_subscriber_origin(s, NULL, &oseq), AETHER_E_INVALID);
    EXPECT(aether_subscriber_origin(s, &broker, NULL), AETHER_E_INVALID);
    CHECK(broker == 7 && oseq == 7);
    CHECK(aether_broker_id(NULL) == 0);
    /* 64-bit FNV-1a of "a" with the low bit set (aether::broker_id). */
    CHECK(aether_broker_id("a") == (0xaf63dc4c8601ec8cULL | 1));

    /* Closing NULL is harmless; lost of NULL is 0. */
    aether_client_close(NULL);
    aether_publisher_close(NULL);
    aether_subscriber_close(NULL);
    CHECK(aether_subscriber_lost(NULL) == 0);
}

/* A reliable publisher's timeout is the caller's: with 50 ms, a publish
 * into a ring its (never reading) subscriber keeps full fails with
 * AETHER_E_TIMEOUT after about 50 ms, not the default 5 s; 0 fails at once. */
static void publish_timeout(aether_client *c, const char *name) {
    aether_topic_config cfg = aether_topic_config_default();
    cfg.policy = AETHER_POLICY_RELIABLE;
    cfg.ring_size = 4096;
    cfg.max_message = 64;
    aether_publisher *p = NULL;
    aether_subscriber *s = NULL;
    EXPECT(aether_topic_create(c, name, &cfg), AETHER_OK);
    EXPECT(aether_subscriber_open(c, name, NULL, &s), AETHER_OK);
    EXPECT(aether_publisher_open(c, name, &p), AETHER_OK);
    if (p == NULL || s == NULL)
        return;
    EXPECT(aether_publisher_set_timeout(p, 50000000), AETHER_OK);
    uint8_t msg[64] = {0};
    int rc = AETHER_OK, sent = 0;
    double t0 = 0;
    while (rc == AETHER_OK && sent < 1000) {
        t0 = now_s();
        rc = aether_publish(p, msg, sizeof msg);
        sent++;
    }
    double took = now_s() - t0;
    EXPECT(rc, AETHER_E_TIMEOUT);
    CHECK(took >= 0.045 && took < 1.0);
    EXPECT(aether_publisher_set_timeout(p, 0), AETHER_OK);
    t0 = now_s();
    EXPECT(aether_publish(p, msg, sizeof msg), AETHER_E_TIMEOUT);
    CHECK(now_s() - t0 < 0.5);
    aether_publisher_close(p);
    aether_subscriber_close(s);
    EXPECT(aether_topic_delete(c, name), AETHER_OK);
}

/* Where large messages go, through aether_publisher_set_large_laps: a
 * subscriber reads two or all of four 64 KiB messages, then stops. Two
 * behind, the publisher fits 12 or more messages more before it must wait
 * in whole laps, and in caught-up laps (the default: no lap is cut short
 * while a subscriber is behind); in short laps, having padded to the next
 * lap while the subscriber was close, only 1 to 3 (the padding counts
 * until the subscriber passes it). Caught up, 14 or 15 in whole and
 * caught-up laps (a subscriber at a lap cut short counts as past it), 3
 * or 4 in short laps. Every message still arrives, intact and in order. */
static void large_laps(aether_client *c, const char *name) {
    static uint8_t msg[65536], in[65536];
    /* -1: the default, not set. */
    const int64_t choices[] = {AETHER_LARGE_LAPS_WHOLE, AETHER_LARGE_LAPS_SHORT, AETHER_LARGE_LAPS_CAUGHT_UP, -1};
    /* Fitted after reading two of four, then all four: least, most. */
    const int room[4][2][2] = {{{12, 15}, {14, 15}}, {{1, 3}, {3, 4}}, {{12, 15}, {14, 15}}, {{12, 15}, {14, 15}}};
    for (int i = 0; i < 4; i++) {
        for (int caught_up = 0; caught_up < 2; caught_up++) {
            aether_topic_config cfg = aether_topic_config_default();
            cfg.policy = AETHER_POLICY_RELIABLE;
            cfg.ring_size = 1 << 20;
            cfg.max_message = sizeof msg;
            aether_publisher *p = NULL;
            aether_subscriber *s = NULL;
            EXPECT(aether_topic_create(c, name, &cfg), AETHER_OK);
            EXPECT(aether_subscriber_open(c, name, NULL, &s), AETHER_OK);
            EXPECT(aether_publisher_open(c, name, &p), AETHER_OK);
            if (p != NULL && s != NULL) {
                if (choices[i] >= 0)
                    EXPECT(aether_publisher_set_large_laps(p, (uint32_t)choices[i]), AETHER_OK);
                size_t len = 0;
                int sent = 0, got = 0;
                for (; sent < 4; sent++) {
                    msg[0] = (uint8_t)sent;
                    EXPECT(aether_publish(p, msg, sizeof msg), AETHER_OK);
                }
                for (; got < (caught_up ? 4 : 2); got++)
                    EXPECT(aether_receive(s, in, sizeof in, &len, 5000000000), AETHER_OK);
                EXPECT(aether_publisher_set_timeout(p, 0), AETHER_OK);
                int more = 0;
                for (;; more++) {
                    msg[0] = (uint8_t)(sent + more);
                    if (aether_publish(p, msg, sizeof msg) != AETHER_OK)
                        break;
                }
                const int *r = room[i][caught_up];
                if (more < r[0] || more > r[1]) {
                    fprintf(stderr, "errors.c:%d: large laps %lld, %s: %d more fitted, not %d to %d\n", __LINE__,
                            (long long)choices[i], caught_up ? "caught up" : "two behind", more, r[0], r[1]);
                    failures++;
                }
                for (; got < sent + more; got++) {
                    EXPECT(aether_receive(s, in, sizeof in, &len, 5000000000), AETHER_OK);
                    CHECK(len == sizeof msg && in[0] == (uint8_t)got);
                }
            }
            aether_publisher_close(p);
            aether_subscriber_close(s);
            EXPECT(aether_topic_delete(c, name), AETHER_OK);
        }
    }
}

static void names_and_configs(aether_client *c) {
    char too_long[122];
    memset(too_long, 'a', 121);
    too_long[121] = '\0';
    const char *invalid[] = {"", "a/b", "..", ".x", "a b", "\xff", too_long};
    aether_publisher *p = NULL;
    aether_subscriber *s = NULL;
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        const char *n = invalid[i];
        int rc = aether_topic_create(c, n, NULL);
        if (rc != AETHER_E_INVALID) {
            fprintf(stderr, "errors.c:%d: aether_topic_create(\"%s\") returned %s, expected AETHER_E_INVALID\n",
                    __LINE__, n, status_name(rc));
            failures++;
        }
        EXPECT(aether_publisher_open(c, n, &p), AETHER_E_INVALID);
        EXPECT(aether_subscriber_open(c, n, NULL, &s), AETHER_E_INVALID);
        EXPECT(aether_topic_delete(c, n), AETHER_E_INVALID);
    }
    CHECK(p == NULL && s == NULL);
    /* 120 bytes is the longest valid name. */
    EXPECT(aether_topic_create(c, longest, NULL), AETHER_OK);
    EXPECT(aether_topic_delete(c, longest), AETHER_OK);

    aether_topic_config cfg = aether_topic_config_default();
    cfg.struct_size = sizeof cfg - 4; /* no layout has that size (40, the first's, is valid) */
    EXPECT(aether_topic_create(c, bad, &cfg), AETHER_E_INVALID);
    /* A program built against a newer header passes a bigger struct: accepted
     * while the fields this library does not know are zero (their defaults). */
    struct {
        aether_topic_config base;
        uint64_t newer_field;
    } grown;
    memset(&grown, 0, sizeof grown);
    grown.base = aether_topic_config_default();
    grown.base.struct_size = sizeof grown;
    EXPECT(aether_topic_create(c, grown_topic, &grown.base), AETHER_OK);
    EXPECT(aether_topic_delete(c, grown_topic), AETHER_OK);
    grown.newer_field = 1;
    EXPECT(aether_topic_create(c, grown_topic, &grown.base), AETHER_E_INVALID);
    CHECK(strstr(aether_last_error(), "does not know") != NULL);
    struct {
        aether_subscriber_config base;
        uint32_t newer_field;
    } grown_sc;
    memset(&grown_sc, 0, sizeof grown_sc);
    grown_sc.base = aether_subscriber_config_default();
    grown_sc.base.struct_size = sizeof grown_sc;
    EXPECT(aether_subscriber_open(c, topic, &grown_sc.base, &s), AETHER_OK);
    aether_subscriber_close(s);
    s = NULL;
    grown_sc.newer_field = 7;
    EXPECT(aether_subscriber_open(c, topic, &grown_sc.base, &s), AETHER_E_INVALID);
    cfg.struct_size = (size_t)1 << 40;
    EXPECT(aether_topic_create(c, bad, &cfg), AETHER_E_INVALID);
    cfg.struct_size = 0;
    EXPECT(aether_topic_create(c, bad, &cfg), AETHER_E_INVALID);
    cfg = aether_topic_config_default();
    cfg.ring_size = 5000;
    EXPECT(aether_topic_create(c, bad, &cfg), AETHER_E_INVALID);
    cfg.ring_size = 2048;
    EXPECT(aether_topic_create(c, bad, &cfg), AETHER_E_INVALID);
    cfg = aether_topic_config_default();
    cfg.ring_size = 4096;
    cfg.max_message = 4096 / 2 - 32 + 1;
    EXPECT(aether_topic_create(c, bad, &cfg), AETHER_E_INVALID);
    cfg.max_message = 0;
    EXPECT(aether_topic_create(c, bad, &cfg), AETHER_E_INVALID);
    cfg = aether_topic_config_default();
    cfg.policy = 7;
    EXPECT(aether_topic_create(c, bad, &cfg), AETHER_E_INVALID);
    cfg = aether_topic_config_default();
    cfg.max_subscribers = 0;
    EXPECT(aether_topic_create(c, bad, &cfg), AETHER_E_INVALID);
    /* A ring left at 0 (the default) is sized for max_message: a 3 MiB
       message, past what the old fixed 4 MiB default allowed, is taken. */
    cfg = aether_topic_config_default();
    CHECK(cfg.ring_size == 0);
    cfg.max_message = (uint64_t)3 << 20;
    EXPECT(aether_topic_create(c, bad, &cfg), AETHER_OK);
    {
        aether_publisher *big = NULL;
        EXPECT(aether_publisher_open(c, bad, &big), AETHER_OK);
        static unsigned char msg[(3 << 20) + 1];
        EXPECT(aether_publish(big, msg, 3 << 20), AETHER_OK);
        EXPECT(aether_publish(big, msg, sizeof msg), AETHER_E_TOO_LARGE);
        aether_publisher_close(big);
    }
    EXPECT(aether_topic_delete(c, bad), AETHER_OK);

    aether_subscriber_config sc = aether_subscriber_config_default();
    sc.struct_size = 16;
    EXPECT(aether_subscriber_open(c, topic, &sc, &s), AETHER_E_INVALID);
    sc = aether_subscriber_config_default();
    sc.wait = 9;
    EXPECT(aether_subscriber_open(c, topic, &sc, &s), AETHER_E_INVALID);
    CHECK(s == NULL);

    EXPECT(aether_topic_create(c, topic, NULL), AETHER_E_EXISTS);
    EXPECT(aether_publisher_open(c, missing, &p), AETHER_E_NOT_FOUND);
    EXPECT(aether_subscriber_open(c, missing, NULL, &s), AETHER_E_NOT_FOUND);
    EXPECT(aether_topic_delete(c, missing), AETHER_E_NOT_FOUND);
    CHECK(p == NULL && s == NULL);

    /* A topic with max_subscribers = 1 refuses a second subscriber. */
    cfg = aether_topic_config_default();
    cfg.max_subscribers = 1;
    EXPECT(aether_topic_create(c, small, &cfg), AETHER_OK);
    aether_subscriber *s1 = NULL, *s2 = NULL;
    EXPECT(aether_subscriber_open(c, small, NULL, &s1), AETHER_OK);
    EXPECT(aether_subscriber_open(c, small, NULL, &s2), AETHER_E_LIMIT);
    CHECK(s2 == NULL);
    aether_subscriber_close(s1);
    EXPECT(aether_subscriber_open(c, small, NULL, &s2), AETHER_OK); /* the slot is free again */
    aether_subscriber_close(s2);
    EXPECT(aether_topic_delete(c, small), AETHER_OK);
}

/* Publishing and receiving on `topic` (max_message 1024); `s` opened before `p` publishes. */
static void data_path(aether_publisher *p, aether_subscriber *s) {
    static uint8_t big[2048], in[2048];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 31 + 7);
    size_t len = 0;
    void *loan = NULL;
    aether_message m, copy;

    /* Too large, copied or loaned. */
    EXPECT(aether_publish(p, big, 1025), AETHER_E_TOO_LARGE);
    EXPECT(aether_loan(p, 1025, &loan), AETHER_E_TOO_LARGE);
    CHECK(loan == NULL);
    EXPECT(aether_publish(p, big, 1024), AETHER_OK);
    EXPECT(aether_receive(s, in, sizeof in, &len, 1000000000), AETHER_OK);
    CHECK(len == 1024 && memcmp(in, big, 1024) == 0);
    /* Published here: no origin elsewhere. */
    uint64_t broker = 7, oseq = 7;
    EXPECT(aether_subscriber_origin(s, &broker, &oseq), AETHER_OK);
    CHECK(broker == 0 && oseq == 0);

    /* Nothing to read: timeout 0 returns at once. */
    double t0 = now_s();
    EXPECT(aether_receive(s, in, sizeof in, &len, 0), AETHER_E_TIMEOUT);
    EXPECT(aether_receive_view(s, &m, 0), AETHER_E_TIMEOUT);
    double took = now_s() - t0;
    if (took > 0.5) {
        fprintf(stderr, "errors.c:%d: two receives with timeout 0 took %.3f s\n", __LINE__, took);
        failures++;
    }
    /* A short timeout is honoured, not much overshot. */
    t0 = now_s();
    EXPECT(aether_receive(s, in, sizeof in, &len, 50000000), AETHER_E_TIMEOUT);
    took = now_s() - t0;
    CHECK(took >= 0.045 && took < 2.0);

    /* Zero-length messages are valid, copied (data NULL) or borrowed. */
    EXPECT(aether_publish(p, NULL, 0), AETHER_OK);
    EXPECT(aether_publish(p, big, 0), AETHER_OK);
    EXPECT(aether_loan(p, 0, &loan), AETHER_OK);
    EXPECT(aether_commit(p, 0), AETHER_OK);
    len = 99;
    EXPECT(aether_receive(s, NULL, 0, &len, 1000000000), AETHER_OK);
    CHECK(len == 0);
    EXPECT(aether_receive_view(s, &m, 1000000000), AETHER_OK);
    CHECK(m.len == 0);
    EXPECT(aether_release(s, &m), AETHER_OK);
    len = 99;
    EXPECT(aether_receive(s, in, sizeof in, &len, 1000000000), AETHER_OK);
    CHECK(len == 0);

    /* Too small a buffer: TOO_LARGE with the needed length; the message stays unread. */
    EXPECT(aether_publish(p, big, 100), AETHER_OK);
    EXPECT(aether_publish(p, big + 1, 3), AETHER_OK);
    len = 0;
    EXPECT(aether_receive(s, in, 10, &len, 1000000000), AETHER_E_TOO_LARGE);
    CHECK(len == 100);
    len = 0;
    EXPECT(aether_receive(s, in, 99, &len, 0), AETHER_E_TOO_LARGE);
    CHECK(len == 100);
    len = 0;
    EXPECT(aether_receive(s, NULL, 0, &len, 0), AETHER_E_TOO_LARGE);
    CHECK(len == 100);
    EXPECT(aether_receive(s, in, 100, &len, 0), AETHER_OK);
    CHECK(len == 100 && memcmp(in, big, 100) == 0);
    EXPECT(aether_receive(s, in, sizeof in, &len, 0), AETHER_OK);
    CHECK(len == 3 && memcmp(in, big + 1, 3) == 0);
    EXPECT(aether_receive(s, in, sizeof in, &len, 0), AETHER_E_TIMEOUT);

    /* Commit or abort with no loan outstanding. */
    EXPECT(aether_commit(p, 0), AETHER_E_INVALID);
    EXPECT(aether_commit(p, 8), AETHER_E_INVALID);
    EXPECT(aether_abort(p), AETHER_E_INVALID);
    /* One loan at a time; a commit is at most the loan; a loan blocks publish. */
    EXPECT(aether_loan(p, 10, &loan), AETHER_OK);
    CHECK(loan != NULL);
    void *loan2 = NULL;
    EXPECT(aether_loan(p, 10, &loan2), AETHER_E_INVALID);
    CHECK(loan2 == NULL);
    EXPECT(aether_publish(p, big, 1), AETHER_E_INVALID);
    CHECK(aether_commit(p, 11) != AETHER_OK);
    EXPECT(aether_abort(p), AETHER_OK);
    EXPECT(aether_abort(p), AETHER_E_INVALID);
    EXPECT(aether_commit(p, 10), AETHER_E_INVALID); /* the aborted loan is gone */
    EXPECT(aether_loan(p, 10, &loan), AETHER_OK);
    memcpy(loan, big, 10);
    EXPECT(aether_commit(p, 6), AETHER_OK);
    EXPECT(aether_commit(p, 6), AETHER_E_INVALID); /* the committed loan is gone */
    EXPECT(aether_abort(p), AETHER_E_INVALID);
    EXPECT(aether_receive(s, in, sizeof in, &len, 1000000000), AETHER_OK);
    CHECK(len == 6 && memcmp(in, big, 6) == 0); /* nothing of the aborted loan */

    /* Release only the view held. */
    EXPECT(aether_publish(p, big, 20), AETHER_OK);
    EXPECT(aether_publish(p, big, 30), AETHER_OK);
    EXPECT(aether_receive_view(s, &m, 1000000000), AETHER_OK);
    CHECK(m.len == 20 && m.data != NULL && memcmp(m.data, big, 20) == 0);
    aether_message other;
    EXPECT(aether_receive_view(s, &other, 0), AETHER_E_INVALID); /* one view at a time */
    EXPECT(aether_receive(s, in, sizeof in, &len, 0), AETHER_E_INVALID);
    copy = m;
    copy.seq += 1;
    EXPECT(aether_release(s, &copy), AETHER_E_INVALID);
    copy = m;
    copy.data = big;
    EXPECT(aether_release(s, &copy), AETHER_E_INVALID);
    EXPECT(aether_release(s, &m), AETHER_OK);
    EXPECT(aether_release(s, &m), AETHER_E_INVALID); /* already released */
    EXPECT(aether_receive_view(s, &m, 1000000000), AETHER_OK);
    CHECK(m.len == 30);
    EXPECT(aether_release(s, &m), AETHER_OK);

    /* Timestamps: the publish time by default, 0 once the publisher sends
     * none (copied or loaned), the time again once it does. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t before = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    EXPECT(aether_publish(p, big, 8), AETHER_OK);
    EXPECT(aether_publisher_set_timestamps(p, 0), AETHER_OK);
    EXPECT(aether_publish(p, big, 8), AETHER_OK);
    EXPECT(aether_loan(p, 8, &loan), AETHER_OK);
    EXPECT(aether_commit(p, 8), AETHER_OK);
    EXPECT(aether_publisher_set_timestamps(p, 1), AETHER_OK);
    EXPECT(aether_publish(p, big, 8), AETHER_OK);
    for (int i = 0; i < 4; i++) {
        EXPECT(aether_receive_view(s, &m, 1000000000), AETHER_OK);
        if (i == 1 || i == 2)
            CHECK(m.timestamp_ns == 0);
        else
            CHECK(m.timestamp_ns + 1000000 >= before && m.timestamp_ns < before + 60000000000u);
        EXPECT(aether_release(s, &m), AETHER_OK);
    }
    CHECK(aether_subscriber_lost(s) == 0);
}

static void strerror_all(void) {
    int codes[] = {0, -1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12, -13, -14, -15,
                   1, -16, 12345, -12345, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *t = aether_strerror(codes[i]);
        if (t == NULL || t[0] == '\0') {
            fprintf(stderr, "errors.c:%d: aether_strerror(%d) is %s\n", __LINE__, codes[i],
                    t == NULL ? "NULL" : "empty");
            failures++;
        }
    }
}

static void no_broker(void) {
    char dir[] = "/tmp/aether-errors-XXXXXX", path[64];
    if (mkdtemp(dir) == NULL) {
        perror("errors: mkdtemp");
        failures++;
        return;
    }
    snprintf(path, sizeof path, "%s/none.sock", dir);
    setenv("AETHER_NO_AUTOSTART", "1", 1);
    char sentinel;
    aether_client *c = (aether_client *)&sentinel;
    double t0 = now_s();
    EXPECT(aether_connect(path, &c), AETHER_E_UNAVAILABLE);
    double took = now_s() - t0;
    CHECK(c == (aether_client *)&sentinel);
    if (took > 1.0) {
        fprintf(stderr, "errors.c:%d: aether_connect to nothing took %.3f s\n", __LINE__, took);
        failures++;
    }
    if (rmdir(dir) != 0) {
        perror("errors: rmdir");
        failures++;
    }
}

/* aether_set_thread_affinity: a bad list is refused and changes nothing;
 * the CPU this thread runs on is accepted and becomes its only one. */
static void thread_affinity(void) {
    cpu_set_t before, after;
    CHECK(sched_getaffinity(0, sizeof before, &before) == 0);
    uint32_t impossible = 100000, here = (uint32_t)sched_getcpu();
    EXPECT(aether_set_thread_affinity(NULL, 1), AETHER_E_INVALID);
    EXPECT(aether_set_thread_affinity(&here, 0), AETHER_E_INVALID);
    EXPECT(aether_set_thread_affinity(&impossible, 1), AETHER_E_INVALID);
    CHECK(strstr(aether_last_error(), "may use") != NULL);
    CHECK(sched_getaffinity(0, sizeof after, &after) == 0 && CPU_EQUAL(&before, &after));
    EXPECT(aether_set_thread_affinity(&here, 1), AETHER_OK);
    CHECK(sched_getaffinity(0, sizeof after, &after) == 0 && CPU_COUNT(&after) == 1 &&
          CPU_ISSET(here, &after));
    CHECK(sched_setaffinity(0, sizeof before, &before) == 0);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: errors SOCKET\n");
        return 2;
    }
    int pid = (int)getpid();
    snprintf(topic, sizeof topic, "errors-%d", pid);
    snprintf(small, sizeof small, "errors-%d-small", pid);
    snprintf(bad, sizeof bad, "errors-%d-bad", pid);
    snprintf(grown_topic, sizeof grown_topic, "errors-%d-grown", pid);
    snprintf(timed, sizeof timed, "errors-%d-timed", pid);
    snprintf(laps, sizeof laps, "errors-%d-laps", pid);
    snprintf(missing, sizeof missing, "errors-%d-missing", pid);
    snprintf(longest, sizeof longest, "errors-%d-", pid);
    memset(longest + strlen(longest), 'L', 120 - strlen(longest));
    longest[120] = '\0';

    strerror_all();
    no_broker();

    aether_client *c = NULL;
    aether_publisher *p = NULL;
    aether_subscriber *s = NULL;
    int rc = aether_connect(argv[1], &c);
    if (rc != AETHER_OK) {
        fprintf(stderr, "errors: aether_connect(%s): %s: %s\n", argv[1], aether_strerror(rc),
                aether_last_error());
        return 1;
    }
    aether_topic_config cfg = aether_topic_config_default();
    cfg.ring_size = 65536;
    cfg.max_message = 1024;
    EXPECT(aether_topic_create(c, topic, &cfg), AETHER_OK);
    EXPECT(aether_publisher_open(c, topic, &p), AETHER_OK);
    EXPECT(aether_subscriber_open(c, topic, NULL, &s), AETHER_OK);
    if (p != NULL && s != NULL) {
        null_arguments(c, p, s);
        thread_affinity();
        names_and_configs(c);
        data_path(p, s);
        publish_timeout(c, timed);
        large_laps(c, laps);

        /* After delete, open handles see it: publishing fails, a subscriber
         * reads what is left and then gets NOT_FOUND; new opens fail. */
        uint8_t one = 42, in[8];
        size_t len = 0;
        EXPECT(aether_publish(p, &one, 1), AETHER_OK);
        EXPECT(aether_topic_delete(c, topic), AETHER_OK);
        aether_publisher *p2 = NULL;
        EXPECT(aether_publisher_open(c, topic, &p2), AETHER_E_NOT_FOUND);
        aether_publisher_close(p2);
        EXPECT(aether_publish(p, &one, 1), AETHER_E_NOT_FOUND);
        EXPECT(aether_receive(s, in, sizeof in, &len, 1000000000), AETHER_OK);
        CHECK(len == 1 && in[0] == 42);
        EXPECT(aether_receive(s, in, sizeof in, &len, 1000000000), AETHER_E_NOT_FOUND);
        EXPECT(aether_topic_delete(c, topic), AETHER_E_NOT_FOUND);
    }
    /* Clean up whatever a failed check may have left behind. */
    const char *created[] = {topic, small, bad, longest, timed, laps};
    for (size_t i = 0; i < sizeof created / sizeof created[0]; i++)
        aether_topic_delete(c, created[i]);
    aether_subscriber_close(s);
    aether_publisher_close(p);
    aether_client_close(c);

    if (failures) {
        fprintf(stderr, "errors: %d check(s) failed\n", failures);
        return 1;
    }
    printf("errors ok\n");
    return 0;
}
