/* subscriber.c — receives COUNT messages from TOPIC and checks each one.
 * Usage: subscriber SOCKET TOPIC COUNT READYFILE [MAXSIZE]
 *
 * Creates READYFILE once subscribed (a subscriber only sees messages published
 * after it opened). Message k must be publisher.c's message k: same size and
 * bytes (MAXSIZE as given to the publisher, default 1024), in order, with
 * strictly increasing sequence numbers and nothing lost. Even messages are
 * copied out with aether_receive, odd ones borrowed with aether_receive_view. */
#include <aether.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messages.h"

#define TIMEOUT_NS (10LL * 1000 * 1000 * 1000)

static int fail(uint64_t k, const char *what, int rc) {
    fprintf(stderr, "subscriber: message %" PRIu64 ": %s: %s (%d): %s\n", k, what,
            aether_strerror(rc), rc, aether_last_error());
    return 1;
}

/* 0 when `data` is message k, else prints why. */
static int check(uint64_t k, const void *data, size_t len, uint8_t *want, size_t max) {
    size_t n = msg_size(k, max);
    if (len != n) {
        fprintf(stderr, "subscriber: message %" PRIu64 ": %zu bytes, expected %zu\n", k, len, n);
        return 1;
    }
    msg_fill(want, k, n);
    if (memcmp(data, want, n) != 0) {
        size_t at = 0;
        while (((const uint8_t *)data)[at] == want[at])
            at++;
        fprintf(stderr,
                "subscriber: message %" PRIu64 ": byte %zu is 0x%02x, expected 0x%02x\n", k, at,
                ((const uint8_t *)data)[at], want[at]);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    uint64_t count, max = 1024;
    if ((argc != 5 && argc != 6) || parse_u64(argv[3], &count) != 0 ||
        (argc == 6 && (parse_u64(argv[5], &max) != 0 || max == 0))) {
        fprintf(stderr, "usage: subscriber SOCKET TOPIC COUNT READYFILE [MAXSIZE]\n");
        return 2;
    }
    uint8_t *buf = malloc((size_t)max), *want = malloc((size_t)max);
    aether_client *c = NULL;
    aether_subscriber *s = NULL;
    int status = 1, rc;
    uint64_t k = 0, last_seq = 0;
    if (buf == NULL || want == NULL) {
        fprintf(stderr, "subscriber: out of memory\n");
        goto out;
    }
    if ((rc = aether_connect(argv[1], &c)) != AETHER_OK) {
        fail(0, "aether_connect", rc);
        goto out;
    }
    if ((rc = aether_subscriber_open(c, argv[2], NULL, &s)) != AETHER_OK) {
        fail(0, "aether_subscriber_open", rc);
        goto out;
    }
    FILE *ready = fopen(argv[4], "w");
    if (ready == NULL || fclose(ready) != 0) {
        fprintf(stderr, "subscriber: cannot create %s: %s\n", argv[4], strerror(errno));
        goto out;
    }

    for (; k < count; k++) {
        uint64_t seq;
        if (k % 2 == 0) {
            size_t len = 0;
            if ((rc = aether_receive(s, buf, (size_t)max, &len, TIMEOUT_NS)) != AETHER_OK) {
                fail(k, "aether_receive", rc);
                goto out;
            }
            if (check(k, buf, len, want, (size_t)max) != 0)
                goto out;
            seq = UINT64_MAX; /* aether_receive does not report it */
        } else {
            aether_message m;
            if ((rc = aether_receive_view(s, &m, TIMEOUT_NS)) != AETHER_OK) {
                fail(k, "aether_receive_view", rc);
                goto out;
            }
            int bad = check(k, m.data, m.len, want, (size_t)max);
            seq = m.seq;
            if ((rc = aether_release(s, &m)) != AETHER_OK) {
                fail(k, "aether_release", rc);
                goto out;
            }
            if (bad)
                goto out;
            if (k > 1 && seq <= last_seq) {
                fprintf(stderr, "subscriber: message %" PRIu64 ": seq %" PRIu64
                                " not above the previous view's %" PRIu64 "\n",
                        k, seq, last_seq);
                goto out;
            }
            last_seq = seq;
        }
    }
    uint64_t lost = aether_subscriber_lost(s);
    if (lost != 0) {
        fprintf(stderr, "subscriber: aether_subscriber_lost() is %" PRIu64 ", expected 0\n", lost);
        goto out;
    }
    printf("received %" PRIu64 " messages\n", k);
    status = 0;
out:
    aether_subscriber_close(s);
    aether_client_close(c);
    free(buf);
    free(want);
    return status;
}
