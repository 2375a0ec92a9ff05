/* consumer.c — the C API linked statically (aether::aether_static): connects
 * and prints the library's version. Usage: consumer_static SOCKET */
#include <aether.h>

#include <stdio.h>

int main(int argc, char **argv) {
    aether_client *c = NULL;
    if (argc != 2 || aether_connect(argv[1], &c) != AETHER_OK) {
        fprintf(stderr, "consumer_static: %s\n", argc == 2 ? aether_last_error() : "usage: consumer_static SOCKET");
        return 1;
    }
    printf("connected (static libaether %s)\n", aether_version());
    aether_client_close(c);
    return 0;
}
