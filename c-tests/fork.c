/* fork.c — a handle belongs to the process that opened it (issue 15, case 7).
 * Usage: fork SOCKET TOPIC
 *
 * The parent opens a publisher and a subscriber on a reliable TOPIC, then
 * forks. In the child, every call on the inherited handles fails with
 * AETHER_E_INVALID (never reading through the parent's cursor or writing its
 * slot), closing them touches nothing of the parent's, and
 * aether_publisher_reopen gives the child a publisher of its own, which
 * publishes. The parent, meanwhile and after the child has exited, keeps its
 * slots: it receives every message (its own and the child's), none lost. */
#define _POSIX_C_SOURCE 200809L
#include <aether.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECOND 1000000000LL
#define COUNT 200

static int fail(const char *who, const char *what, int rc) {
    fprintf(stderr, "fork: %s: %s: %s (%d): %s\n", who, what, aether_strerror(rc), rc, aether_last_error());
    return 1;
}

static int child(aether_publisher *p, aether_subscriber *s) {
    char buf[64];
    size_t len = 0;
    int rc;
    if ((rc = aether_publish(p, "from the child, inherited", 25)) != AETHER_E_INVALID)
        return fail("child", "publish on the parent's publisher", rc);
    if (strstr(aether_last_error(), "forked") == NULL)
        return fail("child", "the error says why", rc);
    if ((rc = aether_receive(s, buf, sizeof buf, &len, 0)) != AETHER_E_INVALID)
        return fail("child", "receive through the parent's cursor", rc);
    aether_message m;
    if ((rc = aether_receive_view(s, &m, 0)) != AETHER_E_INVALID)
        return fail("child", "receive_view through the parent's cursor", rc);
    void *loan;
    if ((rc = aether_loan(p, 8, &loan)) != AETHER_E_INVALID)
        return fail("child", "loan in the parent's slot", rc);
    /* Its own publisher, in one call. */
    if ((rc = aether_publisher_reopen(p)) != AETHER_OK)
        return fail("child", "reopen", rc);
    if ((rc = aether_publish(p, "child", 5)) != AETHER_OK)
        return fail("child", "publish on its own publisher", rc);
    aether_publisher_close(p);
    aether_subscriber_close(s); /* the parent's subscriber: nothing of it is touched */
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: fork SOCKET TOPIC\n");
        return 2;
    }
    aether_client *c;
    aether_publisher *p;
    aether_subscriber *s;
    int rc;
    if ((rc = aether_connect(argv[1], &c)) != AETHER_OK)
        return fail("parent", "connect", rc);
    aether_topic_config cfg = aether_topic_config_default();
    cfg.policy = AETHER_POLICY_RELIABLE;
    cfg.ring_size = 1 << 16;
    cfg.max_message = 1024;
    if ((rc = aether_topic_create(c, argv[2], &cfg)) != AETHER_OK)
        return fail("parent", "topic_create", rc);
    if ((rc = aether_subscriber_open(c, argv[2], NULL, &s)) != AETHER_OK)
        return fail("parent", "subscriber_open", rc);
    if ((rc = aether_publisher_open(c, argv[2], &p)) != AETHER_OK)
        return fail("parent", "publisher_open", rc);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0)
        _exit(child(p, s));
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "fork: the child failed\n");
        return 1;
    }
    /* The child's message first, then ours: all received, nothing lost. */
    char buf[64];
    size_t len;
    if ((rc = aether_receive(s, buf, sizeof buf, &len, 5 * SECOND)) != AETHER_OK)
        return fail("parent", "receive the child's message", rc);
    if (len != 5 || memcmp(buf, "child", 5) != 0) {
        fprintf(stderr, "fork: expected the child's message, got %.*s\n", (int)len, buf);
        return 1;
    }
    for (int i = 0; i < COUNT; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "parent %d", i);
        if ((rc = aether_publish(p, msg, (size_t)n)) != AETHER_OK)
            return fail("parent", "publish after the child exited", rc);
        if ((rc = aether_receive(s, buf, sizeof buf, &len, 5 * SECOND)) != AETHER_OK)
            return fail("parent", "receive after the child exited", rc);
        if (len != (size_t)n || memcmp(buf, msg, len) != 0) {
            fprintf(stderr, "fork: message %d: got %.*s\n", i, (int)len, buf);
            return 1;
        }
    }
    if (aether_subscriber_lost(s) != 0) {
        fprintf(stderr, "fork: the parent lost messages\n");
        return 1;
    }
    aether_publisher_close(p);
    aether_subscriber_close(s);
    aether_topic_delete(c, argv[2]);
    aether_client_close(c);
    printf("fork ok\n");
    return 0;
}
