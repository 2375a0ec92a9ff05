/*
 * What each step of a ring protocol costs a one-way hand-over, measured as
 * a ping-pong between two processes pinned to CPUs 0 and 1 (one-way = round
 * trip / 2, timed with rdtsc, converted with a measured rate). Variant 0 is
 * the floor (aether-bench's `record`: a 64 B payload in a 128 B record,
 * then a stamp); each other variant adds steps the ring takes, one bit
 * each, so their cost reads as the difference from the floor in the same
 * run. Variants alternate, `rounds` times; printed: the median over rounds
 * of each variant's p50, p99, p99.9.
 *
 *   gcc -O2 -mcx16 aether-bench/tools/pingpong_parts.c -o /tmp/pingpong_parts -latomic
 *   /tmp/pingpong_parts [rounds]
 *
 * Steps: RING (records advance through 64 KiB instead of reusing one),
 * HDR (len/stride/seq/timestamp stored before the stamp), CLAIMED (the
 * header and a CLAIMED stamp written once before the payload, as a loan
 * did before session 15), CAS (a `lock cmpxchg16b` on a private tail
 * line), TSC (an rdtsc for the timestamp), CURSOR (the receiver stores a
 * four-word cursor line after each read). Scratch measurement, not a test.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

enum { RING = 1, HDR = 2, CLAIMED = 4, CAS = 8, TSC = 16, CURSOR = 32 };
static const int variants[] = {0, RING | HDR, RING | HDR | CLAIMED, RING | HDR | CAS, RING | HDR | TSC,
                               RING | HDR | CURSOR, RING | HDR | CAS | TSC | CURSOR, 63};
#define NV (int)(sizeof variants / sizeof variants[0])
#define N 100000

typedef struct {
  volatile uint64_t stamp;
  uint32_t len, stride;
  uint64_t seq, ts;
  char payload[96];
} rec_t;
typedef struct {
  __int128 tail;
  char pad[48];
} __attribute__((aligned(64))) tail_t;
typedef struct {
  volatile uint64_t cursor, seq, delivered, lost;
} __attribute__((aligned(64))) cur_t;

static uint64_t mono(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000ull + t.tv_nsec;
}
static void pin(int c) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(c, &s);
  sched_setaffinity(0, sizeof s, &s);
}
static int cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void send(int f, rec_t *w, tail_t *t, uint64_t st, const char *msg) {
  uint64_t ts = 0;
  if (f & CAS) {
    __int128 e = t->tail;
    __atomic_compare_exchange_n(&t->tail, &e, e + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  }
  if (f & CLAIMED) {
    w->stamp = ~st;
    w->len = 64, w->stride = 128, w->seq = st, w->ts = 0;
    __asm__ volatile("" ::: "memory");
  }
  if (f & TSC) ts = __rdtsc();
  memcpy(w->payload, msg, 64);
  if (f & HDR) w->len = 64, w->stride = 128, w->seq = st, w->ts = ts;
  __atomic_store_n(&w->stamp, st, __ATOMIC_RELEASE);
}

/* One variant's run: returns p50, p99, p99.9 in ticks through `out`. */
static void run(int f, uint64_t out[3]) {
  long ring = (f & RING) ? 65536 : 128;
  size_t sz = 2 * ring + 8192;
  char *m = mmap(0, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) exit(1);
  memset(m, 0, sz);
  tail_t *tails = (tail_t *)(m + 2 * ring);
  cur_t *curs = (cur_t *)(m + 2 * ring + 4096);
  int nrec = ring / 128;
  pid_t p = fork();
  int ping = p != 0;
  pin(ping ? 0 : 1);
  char *mine = ping ? m : m + ring, *theirs = ping ? m + ring : m;
  uint64_t *samp = malloc(N * sizeof *samp);
  char msg[64] = {0};
  for (int i = 0; i < N; i++) {
    uint64_t t0 = __rdtsc(), st = i + 1;
    rec_t *w = (rec_t *)(mine + (i % nrec) * 128), *r = (rec_t *)(theirs + (i % nrec) * 128);
    if (ping) memcpy(msg, &i, 4), send(f, w, &tails[ping], st, msg);
    while (__atomic_load_n(&r->stamp, __ATOMIC_ACQUIRE) != st) {
      _mm_prefetch((char *)r + 64, _MM_HINT_T0);
      _mm_pause();
    }
    memcpy(msg, r->payload, 64);
    if ((f & HDR) && (r->len != 64 || r->seq != st)) abort();
    if (f & CURSOR) curs[ping].cursor = i, curs[ping].seq = st, curs[ping].delivered = i, curs[ping].lost = 0;
    if (!ping) send(f, w, &tails[ping], st, msg);
    samp[i] = (__rdtsc() - t0) / 2;
  }
  if (!ping) _exit(0);
  waitpid(p, 0, 0);
  int skip = N / 10, n = N - skip;
  qsort(samp + skip, n, sizeof *samp, cmp);
  out[0] = samp[skip + n / 2], out[1] = samp[skip + n * 99 / 100], out[2] = samp[skip + n * 999 / 1000];
  free(samp);
  munmap(m, sz);
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 10;
  uint64_t t0 = mono(), c0 = __rdtsc();
  usleep(50000);
  double ns_per_tick = (double)(mono() - t0) / (double)(__rdtsc() - c0);
  uint64_t(*all)[NV][3] = calloc(rounds, sizeof *all);
  for (int r = 0; r < rounds; r++)
    for (int v = 0; v < NV; v++) run(variants[v], all[r][v]);
  const char *names[] = {"RING", "HDR", "CLAIMED", "CAS", "TSC", "CURSOR"};
  printf("one-way ns, median over %d alternating rounds of %d round trips\n", rounds, N);
  printf("%-36s %6s %6s %7s\n", "variant", "p50", "p99", "p99.9");
  for (int v = 0; v < NV; v++) {
    char label[64] = "";
    for (int b = 0; b < 6; b++)
      if (variants[v] & (1 << b)) strcat(label, label[0] ? "+" : ""), strcat(label, names[b]);
    uint64_t q[3];
    for (int k = 0; k < 3; k++) {
      uint64_t col[rounds];
      for (int r = 0; r < rounds; r++) col[r] = all[r][v][k];
      qsort(col, rounds, sizeof *col, cmp);
      q[k] = col[rounds / 2];
    }
    printf("%-36s %6.0f %6.0f %7.0f\n", label[0] ? label : "floor (record)", q[0] * ns_per_tick,
           q[1] * ns_per_tick, q[2] * ns_per_tick);
  }
  return 0;
}
