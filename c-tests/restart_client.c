/* restart_client.c — a C client that carries on across daemon restarts
 * (scripts/restart-loop.sh kills aetherd with SIGKILL and starts it again).
 * Usage: restart_client SOCKET TOPIC WAIT XFER
 *   WAIT: futex | spin          XFER: copy | zerocopy
 *
 * Loops: publish message k on TOPIC (reliable; made if missing), receive it
 * back, check it. A call that fails with AETHER_E_UNAVAILABLE (the daemon
 * died) is reported with how long it took (`down MS`), then the subscriber
 * and publisher are reopened, retrying every 20 ms (`up` once both are).
 * Prints `ok N` after 200 round trips (from the start and from each `up`),
 * then every 100000; any other error or a wrong message
 * is printed and ends the program with status 1. SIGTERM ends it with 0. */
#define _POSIX_C_SOURCE 200809L
#include <aether.h>

#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int fatal(const char *what, int rc) {
    printf("error %s: %s (%d): %s\n", what, aether_strerror(rc), rc, aether_last_error());
    fflush(stdout);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 5 || (strcmp(argv[3], "futex") && strcmp(argv[3], "spin")) ||
        (strcmp(argv[4], "copy") && strcmp(argv[4], "zerocopy"))) {
        fprintf(stderr, "usage: restart_client SOCKET TOPIC futex|spin copy|zerocopy\n");
        return 2;
    }
    signal(SIGTERM, on_term);
    const char *sock = argv[1], *topic = argv[2];
    int zerocopy = strcmp(argv[4], "zerocopy") == 0;
    aether_client *c;
    aether_publisher *p;
    aether_subscriber *s;
    int rc;
    if ((rc = aether_connect(sock, &c)) != AETHER_OK)
        return fatal("connect", rc);
    aether_topic_config tcfg = aether_topic_config_default();
    tcfg.policy = AETHER_POLICY_RELIABLE;
    tcfg.ring_size = 1 << 16;
    tcfg.max_message = 64;
    rc = aether_topic_create(c, topic, &tcfg);
    if (rc != AETHER_OK && rc != AETHER_E_EXISTS)
        return fatal("topic_create", rc);
    aether_subscriber_config scfg = aether_subscriber_config_default();
    scfg.wait = strcmp(argv[3], "spin") == 0 ? AETHER_WAIT_SPIN : AETHER_WAIT_FUTEX;
    if ((rc = aether_subscriber_open(c, topic, &scfg, &s)) != AETHER_OK)
        return fatal("subscriber_open", rc);
    if ((rc = aether_publisher_open(c, topic, &p)) != AETHER_OK)
        return fatal("publisher_open", rc);
    /* The client handle is not needed any more: the handles keep what they need. */
    aether_client_close(c);
    printf("ready\n");
    fflush(stdout);

    uint64_t k = 0, ok = 0, since_up = 0;
    char msg[64], got[64];
    while (!stop) {
        int len = snprintf(msg, sizeof msg, "%s %" PRIu64, topic, k);
        int64_t t0 = now_ms();
        const char *what = "publish";
        if (zerocopy) {
            void *buf;
            rc = aether_loan(p, (size_t)len, &buf);
            if (rc == AETHER_OK) {
                memcpy(buf, msg, (size_t)len);
                rc = aether_commit(p, (size_t)len);
            }
        } else {
            rc = aether_publish(p, msg, (size_t)len);
        }
        size_t n = 0;
        if (rc == AETHER_OK) {
            what = "receive";
            if (zerocopy) {
                aether_message m;
                rc = aether_receive_view(s, &m, 2000000000LL);
                if (rc == AETHER_OK) {
                    n = m.len < sizeof got ? m.len : sizeof got;
                    memcpy(got, m.data, n);
                    rc = aether_release(s, &m);
                }
            } else {
                rc = aether_receive(s, got, sizeof got, &n, 2000000000LL);
            }
        }
        if (rc == AETHER_E_UNAVAILABLE) {
            printf("down %" PRId64 " %s\n", now_ms() - t0, what);
            fflush(stdout);
            while (!stop && aether_subscriber_reopen(s) != AETHER_OK)
                sleep_ms(20);
            while (!stop && aether_publisher_reopen(p) != AETHER_OK)
                sleep_ms(20);
            printf("up\n");
            fflush(stdout);
            since_up = 0;
            continue;
        }
        if (rc != AETHER_OK)
            return fatal(what, rc);
        if (n != (size_t)len || memcmp(got, msg, n) != 0) {
            printf("error message %" PRIu64 ": got %.*s\n", k, (int)n, got);
            return 1;
        }
        k++;
        ok++;
        if (++since_up == 200 || ok % 100000 == 0) {
            printf("ok %" PRIu64 "\n", ok);
            fflush(stdout);
        }
    }
    aether_publisher_close(p);
    aether_subscriber_close(s);
    printf("done %" PRIu64 "\n", ok);
    return 0;
}
