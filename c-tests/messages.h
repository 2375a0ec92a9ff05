/* The test stream shared by publisher.c and subscriber.c: message i's size and
 * contents are functions of i, so the subscriber can check every byte. */
#ifndef AETHER_TEST_MESSAGES_H
#define AETHER_TEST_MESSAGES_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Size of message i: spread over 1..max. */
static inline size_t msg_size(uint64_t i, size_t max) { return 1 + (size_t)((i * 7919u) % max); }

/* Contents of message i: i little-endian in the first 8 bytes (when there is
 * room), then byte k = (uint8_t)(i + k). */
static inline void msg_fill(uint8_t *buf, uint64_t i, size_t n) {
    size_t k = 0;
    if (n >= 8)
        for (; k < 8; k++)
            buf[k] = (uint8_t)(i >> (8 * k));
    for (; k < n; k++)
        buf[k] = (uint8_t)(i + k);
}

/* A decimal argument; -1 if it is not one. */
static inline int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

#endif
