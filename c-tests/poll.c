/* poll.c — a shared-memory subscriber in an epoll loop (issue 16).
 * Usage: poll SOCKET TOPIC [COUNT]
 *
 * A forked child publishes COUNT messages (default 20000) on a reliable
 * TOPIC, pausing now and then; the parent waits only in epoll_wait on
 * aether_subscriber_fd (an eventfd), then receives with timeout 0 until
 * AETHER_E_TIMEOUT, as aether.h says to. Every message must arrive, in
 * order and intact, and no epoll_wait may time out (5 s: a lost wake-up).
 * It also checks that the descriptor stays quiet while nothing is
 * published, and that NULL is refused. */
#define _GNU_SOURCE
#include <aether.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SECOND 1000000000LL

static int fail(const char *what, int rc) {
    fprintf(stderr, "poll: %s: %s (%d): %s\n", what, aether_strerror(rc), rc, aether_last_error());
    return 1;
}

static void pause_a_little(unsigned long long i) {
    if (i % 64 == 0) {
        struct timespec ts = {0, (long)(50000 + (i * 7919) % 150000)};
        nanosleep(&ts, NULL);
    }
}

static int publish_all(const char *sock, const char *topic, unsigned long long count) {
    aether_client *c;
    aether_publisher *p;
    int rc;
    if ((rc = aether_connect(sock, &c)) != AETHER_OK) return fail("child connect", rc);
    if ((rc = aether_publisher_open(c, topic, &p)) != AETHER_OK) return fail("child publisher", rc);
    for (unsigned long long i = 0; i < count; i++) {
        if ((rc = aether_publish(p, &i, sizeof i)) != AETHER_OK) return fail("publish", rc);
        pause_a_little(i);
    }
    aether_publisher_close(p);
    aether_client_close(c);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: poll SOCKET TOPIC [COUNT]\n");
        return 2;
    }
    const char *sock = argv[1], *topic = argv[2];
    unsigned long long count = argc == 4 ? strtoull(argv[3], NULL, 10) : 20000;
    aether_client *c;
    aether_subscriber *s;
    int rc;
    if ((rc = aether_connect(sock, &c)) != AETHER_OK) return fail("connect", rc);
    aether_topic_config tc = aether_topic_config_default();
    tc.policy = AETHER_POLICY_RELIABLE;
    tc.ring_size = 1 << 16;
    tc.max_message = 64;
    if ((rc = aether_topic_create(c, topic, &tc)) != AETHER_OK) return fail("create", rc);
    if ((rc = aether_subscriber_open(c, topic, NULL, &s)) != AETHER_OK) return fail("subscriber", rc);
    if (aether_subscriber_fd(NULL) != AETHER_E_INVALID) return fail("NULL subscriber", -1);
    int fd = aether_subscriber_fd(s);
    if (fd < 0) return fail("aether_subscriber_fd", fd);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN}, out;
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        perror("poll: epoll");
        return 1;
    }
    if (epoll_wait(ep, &out, 1, 50) != 0) {
        fprintf(stderr, "poll: the descriptor is readable with nothing published\n");
        return 1;
    }
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) _exit(publish_all(sock, topic, count));
    unsigned long long next = 0, waits = 0, v;
    size_t len;
    while (next < count) {
        rc = aether_receive(s, &v, sizeof v, &len, 0);
        if (rc == AETHER_E_TIMEOUT) {
            waits++;
            int n = epoll_wait(ep, &out, 1, 5000);
            if (n != 1) {
                fprintf(stderr, "poll: epoll_wait timed out at message %llu: a lost wake-up\n", next);
                return 1;
            }
            continue;
        }
        if (rc != AETHER_OK) return fail("receive", rc);
        if (len != sizeof v || v != next) {
            fprintf(stderr, "poll: message %llu is %llu (%zu bytes)\n", next, v, len);
            return 1;
        }
        next++;
    }
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "poll: the publisher failed\n");
        return 1;
    }
    if (aether_subscriber_lost(s) != 0 || waits == 0) {
        fprintf(stderr, "poll: lost %llu, waited %llu times\n", (unsigned long long)aether_subscriber_lost(s), waits);
        return 1;
    }
    close(ep);
    aether_subscriber_close(s);
    aether_topic_delete(c, topic);
    aether_client_close(c);
    printf("poll: %llu messages, %llu waits in epoll_wait, none lost\n", count, waits);
    return 0;
}
