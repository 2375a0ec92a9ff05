/* hello.c — publish one message and receive it, checking every call.
 *
 *   cc hello.c -o hello $(pkg-config --cflags --libs aether) \
 *      -Wl,-rpath,$(pkg-config --variable=libdir aether)
 *   ./hello
 *
 * It uses this user's private broker (started on first use) unless
 * AETHER_SOCKET names another, e.g. the system broker's
 * /run/aether/aetherd.sock. */
#include <aether.h>
#include <stdio.h>

/* Prints what failed and why (the library's message), and says to stop. */
static int failed(const char *what, int rc) {
    fprintf(stderr, "hello: %s: %s: %s\n", what, aether_strerror(rc), aether_last_error());
    return 1;
}

int main(void) {
    aether_client *c = NULL;
    aether_publisher *p = NULL;
    aether_subscriber *s = NULL;
    int rc, status = 1;

    if ((rc = aether_connect(NULL, &c)) != AETHER_OK)
        return failed("connect", rc);
    aether_topic_config cfg = aether_topic_config_default();
    cfg.policy = AETHER_POLICY_RELIABLE;
    rc = aether_topic_create(c, "greetings", &cfg);
    if (rc != AETHER_OK && rc != AETHER_E_EXISTS) { /* another program made it: fine */
        failed("create topic", rc);
        goto out;
    }
    if ((rc = aether_subscriber_open(c, "greetings", NULL, &s)) != AETHER_OK) {
        failed("subscribe", rc);
        goto out;
    }
    if ((rc = aether_publisher_open(c, "greetings", &p)) != AETHER_OK) {
        failed("open publisher", rc);
        goto out;
    }
    if ((rc = aether_publish(p, "hello", 5)) != AETHER_OK) {
        failed("publish", rc);
        goto out;
    }
    char buf[64];
    size_t len;
    if ((rc = aether_receive(s, buf, sizeof buf, &len, 1000000000 /* 1 s */)) != AETHER_OK) {
        failed("receive", rc);
        goto out;
    }
    printf("got %.*s (libaether %s)\n", (int)len, buf, aether_version());
    status = 0;
out:
    aether_publisher_close(p);
    aether_subscriber_close(s);
    aether_client_close(c);
    return status;
}
