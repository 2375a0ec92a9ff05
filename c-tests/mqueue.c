/* mqueue.c — message-queue delivery and the control queue, from C.
 * Usage: mqueue SOCKET TOPIC [COUNT]
 *
 * Creates TOPIC (reliable, messages up to 16 KiB, or up to the queue limit
 * where that is larger), opens an AETHER_DELIVERY_MQUEUE
 * subscriber and waits for each of COUNT messages (default 200) with poll()
 * on aether_subscriber_fd() before taking it with aether_receive(timeout 0).
 * Then publishes a message too large for the queue and one more: the big one
 * is skipped and counted, an AETHER_NOTICE_TOO_LARGE notice arrives on the
 * control queue (polled via aether_client_notices_fd()), and the next message
 * still comes. Finally deletes TOPIC from a second connection: the
 * subscriber's stream ends with AETHER_E_NOT_FOUND and an
 * AETHER_NOTICE_TOPIC_DELETED notice arrives. Exits 0 when all holds. */
#define _POSIX_C_SOURCE 200809L
#include <aether.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_MAX_MESSAGE 16384
#define HEADER 24 /* bytes the broker puts before each message in the queue */
#define WAIT_MS 5000

static int failures;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "mqueue.c:%d: check failed: %s (last error: %s)\n", __LINE__,   \
                    #cond, aether_last_error());                                             \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

/* Fails the run (and stops it) when `call` does not return `want`. */
#define MUST(call, want)                                                                     \
    do {                                                                                     \
        int rc_ = (call);                                                                    \
        if (rc_ != (want)) {                                                                 \
            fprintf(stderr, "mqueue.c:%d: %s returned %d (%s), expected %d: %s\n", __LINE__, \
                    #call, rc_, aether_strerror(rc_), (want), aether_last_error());          \
            failures++;                                                                      \
            goto out;                                                                        \
        }                                                                                    \
    } while (0)

static size_t msg_size(uint64_t i) { return 1 + (size_t)((i * 7919u) % 1000); }

static void msg_fill(uint8_t *buf, uint64_t i, size_t n) {
    for (size_t k = 0; k < n; k++)
        buf[k] = (uint8_t)(i * 31 + k);
}

/* Whether `fd` is readable within WAIT_MS. */
static int readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    do
        n = poll(&p, 1, WAIT_MS);
    while (n < 0 && errno == EINTR);
    return n == 1 && (p.revents & POLLIN);
}

static long proc_long(const char *path, long fallback) {
    FILE *f = fopen(path, "r");
    long v = fallback;
    if (f != NULL) {
        if (fscanf(f, "%ld", &v) != 1)
            v = fallback;
        fclose(f);
    }
    return v;
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: mqueue SOCKET TOPIC [COUNT]\n");
        return 2;
    }
    const char *sock = argv[1], *topic = argv[2];
    uint64_t count = argc == 4 ? strtoull(argv[3], NULL, 10) : 200;
    /* The queue's message size is the system's limit (or the topic's max +
     * header). The topic's max is at least that limit, so that a message one
     * byte too large for the queue still fits the ring, whatever the limit. */
    long msgsize = proc_long("/proc/sys/fs/mqueue/msgsize_max", 8192);
    size_t max_message = msgsize > MIN_MAX_MESSAGE ? (size_t)msgsize : MIN_MAX_MESSAGE;
    uint64_t ring = 1 << 16;
    while (ring / 2 - 64 < max_message)
        ring *= 2;
    size_t cap = (size_t)msgsize - HEADER, big = cap + 1;

    aether_client *c = NULL, *admin = NULL;
    aether_subscriber *s = NULL, *shm = NULL;
    aether_publisher *p = NULL;
    uint8_t *buf = malloc(max_message), *want = malloc(max_message);
    aether_notice n;
    size_t len;
    if (buf == NULL || want == NULL) {
        fprintf(stderr, "mqueue: out of memory\n");
        return 1;
    }

    MUST(aether_connect(sock, &c), AETHER_OK);
    MUST(aether_connect(sock, &admin), AETHER_OK);
    aether_topic_config tc = aether_topic_config_default();
    tc.policy = AETHER_POLICY_RELIABLE;
    tc.ring_size = ring;
    tc.max_message = max_message;
    MUST(aether_topic_create(admin, topic, &tc), AETHER_OK);

    /* A shm subscriber's descriptor is an eventfd (c-tests/poll.c plays it);
     * NULL has none. The first layout of the config (struct_size 24, no
     * delivery field) still works. */
    aether_subscriber_config old = aether_subscriber_config_default();
    old.struct_size = 24;
    MUST(aether_subscriber_open(c, topic, &old, &shm), AETHER_OK);
    CHECK(aether_subscriber_fd(shm) >= 0 && aether_subscriber_fd(shm) == aether_subscriber_fd(shm));
    CHECK(aether_subscriber_fd(NULL) == AETHER_E_INVALID);
    CHECK(aether_subscriber_too_large(shm) == 0);
    aether_subscriber_close(shm);
    shm = NULL;

    aether_subscriber_config cfg = aether_subscriber_config_default();
    CHECK(cfg.struct_size == sizeof cfg && cfg.delivery == AETHER_DELIVERY_SHM);
    cfg.delivery = 7;
    MUST(aether_subscriber_open(c, topic, &cfg, &s), AETHER_E_INVALID);
    cfg.delivery = AETHER_DELIVERY_MQUEUE;
    MUST(aether_subscriber_open(c, topic, &cfg, &s), AETHER_OK);
    int fd = aether_subscriber_fd(s);
    int nfd = aether_client_notices_fd(c);
    CHECK(fd >= 0);
    CHECK(nfd >= 0 && aether_client_notices_fd(c) == nfd);
    CHECK(aether_client_notices_fd(NULL) == AETHER_E_INVALID);
    struct pollfd idle = {.fd = fd, .events = POLLIN};
    CHECK(poll(&idle, 1, 0) == 0);
    aether_message view;
    MUST(aether_receive_view(s, &view, 0), AETHER_E_INVALID);
    MUST(aether_receive(s, buf, max_message, &len, 0), AETHER_E_TIMEOUT);

    /* COUNT messages, each awaited in poll(). */
    MUST(aether_publisher_open(admin, topic, &p), AETHER_OK);
    for (uint64_t k = 0; k < count; k++) {
        size_t m = msg_size(k);
        msg_fill(want, k, m);
        MUST(aether_publish(p, want, m), AETHER_OK);
        if (!readable(fd)) {
            fprintf(stderr, "mqueue: message %" PRIu64 ": descriptor not readable in %d ms\n", k,
                    WAIT_MS);
            failures++;
            goto out;
        }
        MUST(aether_receive(s, buf, max_message, &len, 0), AETHER_OK);
        if (len != m || memcmp(buf, want, m) != 0) {
            fprintf(stderr, "mqueue: message %" PRIu64 ": %zu bytes, expected %zu, or bytes differ\n",
                    k, len, m);
            failures++;
            goto out;
        }
    }

    /* Too large for the queue: skipped, counted, reported; the next one comes. */
    msg_fill(want, count, big);
    MUST(aether_publish(p, want, big), AETHER_OK);
    msg_fill(want, count + 1, 5);
    MUST(aether_publish(p, want, 5), AETHER_OK);
    CHECK(readable(fd));
    MUST(aether_receive(s, buf, max_message, &len, 0), AETHER_OK);
    CHECK(len == 5 && memcmp(buf, want, 5) == 0);
    CHECK(aether_subscriber_too_large(s) == 1);
    CHECK(aether_subscriber_lost(s) == 0);
    CHECK(readable(nfd));
    MUST(aether_client_next_notice(c, &n, 0), AETHER_OK);
    CHECK(n.kind == AETHER_NOTICE_TOO_LARGE);
    CHECK(strcmp(n.topic, topic) == 0);
    CHECK(n.seq == count && n.len == big && n.count == 1);

    /* Deleted from another connection: the stream ends, and we are told. */
    aether_publisher_close(p);
    p = NULL;
    MUST(aether_topic_delete(admin, topic), AETHER_OK);
    CHECK(readable(fd));
    MUST(aether_receive(s, buf, max_message, &len, 0), AETHER_E_NOT_FOUND);
    MUST(aether_receive(s, buf, max_message, &len, 0), AETHER_E_NOT_FOUND);
    MUST(aether_client_next_notice(c, &n, (int64_t)WAIT_MS * 1000000), AETHER_OK);
    CHECK(n.kind == AETHER_NOTICE_TOPIC_DELETED && strcmp(n.topic, topic) == 0);
    MUST(aether_client_next_notice(c, &n, 0), AETHER_E_TIMEOUT);
    MUST(aether_client_next_notice(c, NULL, 0), AETHER_E_INVALID);

out:
    aether_publisher_close(p);
    aether_subscriber_close(shm);
    aether_subscriber_close(s);
    if (failures && admin != NULL)
        aether_topic_delete(admin, topic); /* leave nothing behind */
    aether_client_close(admin);
    aether_client_close(c);
    free(buf);
    free(want);
    if (failures)
        return 1;
    printf("mqueue ok: %" PRIu64 " messages via poll(), 1 too large, 2 notices\n", count + 1);
    return 0;
}
