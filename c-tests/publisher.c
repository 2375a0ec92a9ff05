/* publisher.c — publishes COUNT deterministic messages to an existing TOPIC.
 * Usage: publisher SOCKET TOPIC COUNT [MAXSIZE]
 *
 * The topic must exist (the test script creates it with aether-cli). Message
 * i has msg_size(i) bytes (1..MAXSIZE, default 1024) and contents msg_fill(i);
 * subscriber.c checks them with the same two functions. Every third message
 * goes through the zero-copy path (aether_loan + write + aether_commit), the
 * others through aether_publish; one loan is aborted before the first message. */
#include <aether.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "messages.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "publisher: %s: %s (%d): %s\n", what, aether_strerror(rc), rc,
            aether_last_error());
    return 1;
}

int main(int argc, char **argv) {
    uint64_t count, max = 1024;
    if ((argc != 4 && argc != 5) || parse_u64(argv[3], &count) != 0 ||
        (argc == 5 && (parse_u64(argv[4], &max) != 0 || max == 0))) {
        fprintf(stderr, "usage: publisher SOCKET TOPIC COUNT [MAXSIZE]\n");
        return 2;
    }
    uint8_t *buf = malloc((size_t)max);
    if (buf == NULL) {
        fprintf(stderr, "publisher: out of memory\n");
        return 1;
    }

    aether_client *c = NULL;
    aether_publisher *p = NULL;
    int status = 1, rc;
    if ((rc = aether_connect(argv[1], &c)) != AETHER_OK) {
        fail("aether_connect", rc);
        goto out;
    }
    if ((rc = aether_publisher_open(c, argv[2], &p)) != AETHER_OK) {
        fail("aether_publisher_open", rc);
        goto out;
    }

    /* A loan given up publishes nothing: subscribers must still see message 0 first. */
    void *loan = NULL;
    if ((rc = aether_loan(p, (size_t)max, &loan)) != AETHER_OK) {
        fail("aether_loan (to abort)", rc);
        goto out;
    }
    msg_fill(loan, UINT64_MAX, (size_t)max);
    if ((rc = aether_abort(p)) != AETHER_OK) {
        fail("aether_abort", rc);
        goto out;
    }

    for (uint64_t i = 0; i < count; i++) {
        size_t n = msg_size(i, (size_t)max);
        if (i % 3 == 2) {
            if ((rc = aether_loan(p, n, &loan)) != AETHER_OK) {
                fprintf(stderr, "publisher: message %" PRIu64 ": ", i);
                fail("aether_loan", rc);
                goto out;
            }
            msg_fill(loan, i, n);
            rc = aether_commit(p, n);
            if (rc != AETHER_OK) {
                fprintf(stderr, "publisher: message %" PRIu64 ": ", i);
                fail("aether_commit", rc);
                goto out;
            }
        } else {
            msg_fill(buf, i, n);
            if ((rc = aether_publish(p, buf, n)) != AETHER_OK) {
                fprintf(stderr, "publisher: message %" PRIu64 ": ", i);
                fail("aether_publish", rc);
                goto out;
            }
        }
    }
    printf("published %" PRIu64 " messages\n", count);
    status = 0;
out:
    aether_publisher_close(p);
    aether_client_close(c);
    free(buf);
    return status;
}
