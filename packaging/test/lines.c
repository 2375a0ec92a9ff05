/* lines.c — the package test's C subscriber (scripts/package-test.sh).
 * Usage: lines SOCKET TOPIC COUNT READYFILE
 *
 * Subscribes to TOPIC, creates READYFILE (a subscriber only sees what is
 * published after it opened), then prints COUNT messages, one per line, as
 * `aether-cli sub` does: what `aether-cli pub` sent, line by line, comes back
 * out. Exits 1 on any error or when no message arrives for 10 s. */
#include <aether.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_NS (10LL * 1000 * 1000 * 1000)

static int fail(const char *what, int rc) {
    fprintf(stderr, "lines: %s: %s (%d): %s\n", what, aether_strerror(rc), rc, aether_last_error());
    return 1;
}

int main(int argc, char **argv) {
    char *end;
    errno = 0;
    unsigned long long count = argc == 5 ? strtoull(argv[3], &end, 10) : 0;
    if (argc != 5 || errno || end == argv[3] || *end != '\0') {
        fprintf(stderr, "usage: lines SOCKET TOPIC COUNT READYFILE\n");
        return 2;
    }
    aether_client *c = NULL;
    aether_subscriber *s = NULL;
    int status = 1, rc;
    if ((rc = aether_connect(argv[1], &c)) != AETHER_OK) {
        fail("aether_connect", rc);
        goto out;
    }
    if ((rc = aether_subscriber_open(c, argv[2], NULL, &s)) != AETHER_OK) {
        fail("aether_subscriber_open", rc);
        goto out;
    }
    FILE *ready = fopen(argv[4], "w");
    if (ready == NULL || fclose(ready) != 0) {
        fprintf(stderr, "lines: cannot create %s: %s\n", argv[4], strerror(errno));
        goto out;
    }
    for (unsigned long long k = 0; k < count; k++) {
        aether_message m;
        if ((rc = aether_receive_view(s, &m, TIMEOUT_NS)) != AETHER_OK) {
            fail("aether_receive_view", rc);
            goto out;
        }
        fwrite(m.data, 1, m.len, stdout);
        putchar('\n');
        if ((rc = aether_release(s, &m)) != AETHER_OK) {
            fail("aether_release", rc);
            goto out;
        }
    }
    if (fflush(stdout) != 0)
        goto out;
    status = 0;
out:
    aether_subscriber_close(s);
    aether_client_close(c);
    return status;
}
