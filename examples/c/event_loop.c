/* event_loop.c — a subscriber in an epoll loop, beside other descriptors.
 *
 *   cc event_loop.c -o event_loop $(pkg-config --cflags --libs aether) \
 *      -Wl,-rpath,$(pkg-config --variable=libdir aether)
 *   ./event_loop TOPIC [COUNT]         # then publish: aether-cli pub TOPIC hello
 *
 * aether_subscriber_fd gives a descriptor that is readable when a receive
 * may not come back empty: wait for it, then receive with timeout 0 until
 * AETHER_E_TIMEOUT (which re-arms it), then wait again. Standard input is
 * watched too: the loop ends on end of file, or after COUNT messages. */
#define _GNU_SOURCE
#include <aether.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

static int failed(const char *what, int rc) {
    fprintf(stderr, "event_loop: %s: %s: %s\n", what, aether_strerror(rc), aether_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: event_loop TOPIC [COUNT]\n");
        return 2;
    }
    long count = argc == 3 ? strtol(argv[2], NULL, 10) : -1;
    aether_client *c = NULL;
    aether_subscriber *s = NULL;
    int rc;
    if ((rc = aether_connect(NULL, &c)) != AETHER_OK)
        return failed("connect", rc);
    rc = aether_topic_create(c, argv[1], NULL);
    if (rc != AETHER_OK && rc != AETHER_E_EXISTS)
        return failed("create topic", rc);
    if ((rc = aether_subscriber_open(c, argv[1], NULL, &s)) != AETHER_OK)
        return failed("subscribe", rc);
    int fd = aether_subscriber_fd(s);
    if (fd < 0)
        return failed("aether_subscriber_fd", fd);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event sub_ev = {.events = EPOLLIN, .data.fd = fd};
    struct epoll_event in_ev = {.events = EPOLLIN, .data.fd = STDIN_FILENO};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &sub_ev) != 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &in_ev) != 0) {
        perror("event_loop: epoll");
        return 1;
    }
    fprintf(stderr, "event_loop: subscribed to %s\n", argv[1]);
    fflush(stderr);
    char buf[65536];
    size_t len;
    long got = 0;
    int status = 0;
    while (count < 0 || got < count) {
        struct epoll_event ev;
        if (epoll_wait(ep, &ev, 1, -1) != 1)
            continue;
        if (ev.data.fd == STDIN_FILENO) {
            if (read(STDIN_FILENO, buf, sizeof buf) <= 0)
                break; /* end of file: stop */
            continue;
        }
        /* Everything that is there, then back to waiting. */
        while ((rc = aether_receive(s, buf, sizeof buf, &len, 0)) == AETHER_OK) {
            printf("%.*s\n", (int)len, buf);
            fflush(stdout);
            got++;
        }
        if (rc != AETHER_E_TIMEOUT) {
            status = failed("receive", rc);
            break;
        }
    }
    close(ep);
    aether_subscriber_close(s);
    aether_client_close(c);
    return status;
}
