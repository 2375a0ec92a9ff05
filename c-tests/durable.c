/* durable.c — durable topics through the C API, against a running broker
 * that has a state directory.
 * Usage: durable SOCKET TOPIC
 *
 * Makes TOPIC durable (fsync always), publishes 10 messages, then reads
 * them back from the log: from the earliest, from seq 7, and through a
 * durable subscription that commits after 4 and is reopened (it resumes
 * at 4). A lossy durable topic: a subscriber with fill_gaps gets what it
 * was lapped over from the log. Configs of the older layouts, whose tail
 * padding now holds the new fields, keep their old meaning whatever that
 * padding holds. Per-topic retention: TOPIC-retained (retain_bytes,
 * retain_seconds set) is made; retention on a topic that is not durable is
 * refused, and a config of the third layout (struct_size 56, before
 * retain_*) means the daemon's [log] values whatever follows it.
 * Deletes TOPIC (and its log) at the end. */
#include <aether.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "durable.c:%d: check failed: %s (last error: %s)\n", __LINE__, \
                    #cond, aether_last_error());                                          \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

#define SECOND (1000LL * 1000 * 1000)

/* Receives `n` messages from `s` and checks they are first, first+1, ...:
 * their text is "message <seq>". */
static void receive_checked(aether_subscriber *s, uint64_t first, int n) {
    for (int i = 0; i < n; i++) {
        char buf[64], want[64];
        size_t len = 0;
        aether_message m;
        /* Half copied out, half viewed in place (from the log's buffer). */
        if (i % 2 == 0) {
            CHECK(aether_receive(s, buf, sizeof buf - 1, &len, 5 * SECOND) == AETHER_OK);
        } else if (aether_receive_view(s, &m, 5 * SECOND) == AETHER_OK) {
            len = m.len < sizeof buf - 1 ? m.len : sizeof buf - 1;
            memcpy(buf, m.data, len);
            CHECK(m.seq == first + (uint64_t)i);
            CHECK(aether_release(s, &m) == AETHER_OK);
        } else {
            CHECK(!"aether_receive_view");
        }
        buf[len] = '\0';
        snprintf(want, sizeof want, "message %" PRIu64, first + (uint64_t)i);
        if (strcmp(buf, want) != 0) {
            fprintf(stderr, "durable.c: got \"%s\", expected \"%s\"\n", buf, want);
            failures++;
        }
    }
}

/* Opens a subscriber of `topic` from `start` and checks its first `n`
 * messages (receive_checked). */
static aether_subscriber *read_from(aether_client *c, const char *topic, aether_subscriber_config *sc,
                                    uint64_t first, int n) {
    aether_subscriber *s = NULL;
    int rc = aether_subscriber_open(c, topic, sc, &s);
    CHECK(rc == AETHER_OK);
    if (rc != AETHER_OK)
        return NULL;
    receive_checked(s, first, n);
    return s;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: durable SOCKET TOPIC\n");
        return 2;
    }
    const char *topic = argv[2];
    char memory[200];
    snprintf(memory, sizeof memory, "%s-memory", topic);
    aether_client *c = NULL;
    if (aether_connect(argv[1], &c) != AETHER_OK) {
        fprintf(stderr, "durable: connect: %s\n", aether_last_error());
        return 1;
    }
    aether_topic_config tc = aether_topic_config_default();
    tc.policy = AETHER_POLICY_RELIABLE;
    tc.durability = AETHER_DURABILITY_WAL;
    tc.fsync = AETHER_FSYNC_ALWAYS;
    CHECK(aether_topic_create(c, topic, &tc) == AETHER_OK);
    aether_publisher *p = NULL;
    CHECK(aether_publisher_open(c, topic, &p) == AETHER_OK);
    for (int i = 0; i < 10 && p != NULL; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "message %d", i);
        /* fsync always: each returns once its message is on disk. */
        CHECK(aether_publish(p, msg, (size_t)n) == AETHER_OK);
    }

    /* The topic's figures from the broker (fsync always: everything is logged). */
    aether_topic_statistics ts;
    memset(&ts, 0xff, sizeof ts);
    ts.struct_size = sizeof ts;
    CHECK(aether_topic_stats(c, topic, &ts) == AETHER_OK);
    CHECK(ts.published == 10 && ts.publishers == 1 && ts.durable == 1 && ts.log_next_seq == 10);
    CHECK(ts.struct_size == sizeof ts && ts._reserved == 0);
    ts.struct_size = 8;
    CHECK(aether_topic_stats(c, topic, &ts) == AETHER_E_INVALID);
    CHECK(aether_topic_stats(c, topic, NULL) == AETHER_E_INVALID);

    aether_subscriber_config sc = aether_subscriber_config_default();
    sc.start = AETHER_START_EARLIEST;
    aether_subscriber *all = read_from(c, topic, &sc, 0, 10);
    aether_subscriber_statistics ss;
    memset(&ss, 0, sizeof ss);
    ss.struct_size = sizeof ss;
    CHECK(aether_subscriber_stats(all, &ss) == AETHER_OK);
    CHECK(ss.published == 10 && ss.delivered == 10 && ss.lag == 0 && ss.lost == 0);
    aether_subscriber_close(all);
    sc.start = AETHER_START_SEQ;
    sc.start_value = 7;
    aether_subscriber_close(read_from(c, topic, &sc, 7, 3));

    sc = aether_subscriber_config_default();
    sc.start = AETHER_START_DURABLE;
    sc.durable_name = "c-test";
    aether_subscriber *d = read_from(c, topic, &sc, 0, 6);
    /* Commit after the first four only: reopening resumes at 4. */
    aether_subscriber_close(d);
    d = read_from(c, topic, &sc, 0, 4);
    CHECK(aether_subscriber_commit(d) == AETHER_OK);
    aether_subscriber *twice = NULL;
    CHECK(aether_subscriber_open(c, topic, &sc, &twice) == AETHER_E_EXISTS);
    aether_subscriber_close(d);
    aether_subscriber_close(read_from(c, topic, &sc, 4, 6));
    sc.durable_name = "../bad";
    CHECK(aether_subscriber_open(c, topic, &sc, &twice) == AETHER_E_INVALID);
    sc.durable_name = NULL;
    CHECK(aether_subscriber_open(c, topic, &sc, &twice) == AETHER_E_INVALID);
    CHECK(twice == NULL);
    CHECK(aether_subscriber_commit(NULL) == AETHER_E_INVALID);

    /* A program built against the first topic layout (struct_size 40) left
     * `durability`'s bytes as padding: whatever they hold, not durable. */
    tc = aether_topic_config_default();
    tc.policy = AETHER_POLICY_RELIABLE;
    tc.struct_size = 40;
    tc.durability = AETHER_DURABILITY_WAL;
    CHECK(aether_topic_create(c, memory, &tc) == AETHER_OK);
    sc = aether_subscriber_config_default();
    sc.start = AETHER_START_EARLIEST;
    CHECK(aether_subscriber_open(c, memory, &sc, &twice) == AETHER_E_INVALID);
    CHECK(strstr(aether_last_error(), "not durable") != NULL);
    /* Likewise a subscriber config of the second layout (struct_size 32): latest. */
    sc.struct_size = 32;
    CHECK(aether_subscriber_open(c, memory, &sc, &twice) == AETHER_OK);
    aether_subscriber_close(twice);
    /* Commit is for durable subscriptions. */
    aether_subscriber *plain = NULL;
    CHECK(aether_subscriber_open(c, topic, NULL, &plain) == AETHER_OK);
    CHECK(aether_subscriber_commit(plain) == AETHER_E_INVALID);
    aether_subscriber_close(plain);
    /* A lossy durable topic whose ring holds 64 messages: 500 published to a
     * subscriber with fill_gaps that reads nothing meanwhile. The publisher
     * waits for the log writer alone; the subscriber gets all 500 in order,
     * what it was lapped over from the log. */
    char lossy[200];
    snprintf(lossy, sizeof lossy, "%s-lossy", topic);
    tc = aether_topic_config_default();
    tc.durability = AETHER_DURABILITY_WAL;
    tc.ring_size = 4096;
    tc.max_message = 64;
    CHECK(aether_topic_create(c, lossy, &tc) == AETHER_OK);
    sc = aether_subscriber_config_default();
    sc.fill_gaps = 1;
    aether_subscriber *filler = NULL;
    CHECK(aether_subscriber_open(c, lossy, &sc, &filler) == AETHER_OK);
    aether_publisher *lp = NULL;
    CHECK(aether_publisher_open(c, lossy, &lp) == AETHER_OK);
    for (int i = 0; i < 500 && lp != NULL; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "message %d", i);
        CHECK(aether_publish(lp, msg, (size_t)n) == AETHER_OK);
    }
    if (filler != NULL)
        receive_checked(filler, 0, 500);
    memset(&ss, 0, sizeof ss);
    ss.struct_size = sizeof ss;
    CHECK(aether_subscriber_stats(filler, &ss) == AETHER_OK);
    CHECK(ss.delivered == 500 && ss.lost == 0);
    aether_subscriber_close(filler);
    /* fill_gaps is 0 or 1, on a durable topic; a config of the third layout
     * (struct_size 48) left it as padding: whatever it holds, 0. */
    sc = aether_subscriber_config_default();
    sc.fill_gaps = 2;
    CHECK(aether_subscriber_open(c, lossy, &sc, &twice) == AETHER_E_INVALID);
    sc.fill_gaps = 1;
    CHECK(aether_subscriber_open(c, memory, &sc, &twice) == AETHER_E_INVALID);
    CHECK(strstr(aether_last_error(), "not durable") != NULL);
    sc.struct_size = 48;
    CHECK(aether_subscriber_open(c, memory, &sc, &twice) == AETHER_OK);
    aether_subscriber_close(twice);
    aether_publisher_close(lp);
    CHECK(aether_topic_delete(c, lossy) == AETHER_OK);
    /* An unknown fsync is refused. */
    tc = aether_topic_config_default();
    tc.durability = AETHER_DURABILITY_WAL;
    tc.fsync = 9;
    CHECK(aether_topic_create(c, "durable-c-bad", &tc) == AETHER_E_INVALID);

    /* Per-topic retention: 0 is "no limit", AETHER_RETAIN_DEFAULT "the
     * daemon's [log] value" (what the default config holds). */
    char retained[200];
    snprintf(retained, sizeof retained, "%s-retained", topic);
    tc = aether_topic_config_default();
    CHECK(tc.retain_bytes == AETHER_RETAIN_DEFAULT && tc.retain_seconds == AETHER_RETAIN_DEFAULT);
    tc.retain_bytes = 1 << 20;
    CHECK(aether_topic_create(c, "durable-c-retain-memory", &tc) == AETHER_E_INVALID);
    CHECK(strstr(aether_last_error(), "not durable") != NULL);
    tc.retain_bytes = 0;
    CHECK(aether_topic_create(c, "durable-c-retain-memory", &tc) == AETHER_E_INVALID);
    tc.retain_bytes = AETHER_RETAIN_DEFAULT;
    tc.retain_seconds = 0;
    CHECK(aether_topic_create(c, "durable-c-retain-memory", &tc) == AETHER_E_INVALID);
    CHECK(aether_topic_delete(c, "durable-c-retain-memory") == AETHER_E_NOT_FOUND);
    tc.policy = AETHER_POLICY_RELIABLE;
    tc.durability = AETHER_DURABILITY_WAL;
    tc.retain_bytes = 1 << 20;
    tc.retain_seconds = 0; /* kept forever, whatever [log] says */
    CHECK(aether_topic_create(c, retained, &tc) == AETHER_OK);
    aether_publisher *rp = NULL;
    CHECK(aether_publisher_open(c, retained, &rp) == AETHER_OK);
    CHECK(rp != NULL && aether_publish(rp, "message 0", 9) == AETHER_OK);
    aether_publisher_close(rp);
    sc = aether_subscriber_config_default();
    sc.start = AETHER_START_EARLIEST;
    aether_subscriber_close(read_from(c, retained, &sc, 0, 1));
    CHECK(aether_topic_delete(c, retained) == AETHER_OK);
    /* The third layout (struct_size 56) ends before retain_bytes: what
     * follows is not read (here 0, which would be "no limit"), and the topic
     * not being durable is no error. */
    tc = aether_topic_config_default();
    tc.struct_size = 56;
    tc.retain_bytes = 0;
    tc.retain_seconds = 0;
    CHECK(aether_topic_create(c, retained, &tc) == AETHER_OK);
    CHECK(aether_topic_delete(c, retained) == AETHER_OK);

    aether_publisher_close(p);
    CHECK(aether_topic_delete(c, topic) == AETHER_OK);
    CHECK(aether_topic_delete(c, memory) == AETHER_OK);
    aether_client_close(c);
    if (failures == 0)
        printf("durable: all checks passed\n");
    return failures == 0 ? 0 : 1;
}
