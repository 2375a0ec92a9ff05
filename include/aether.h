/*
 * aether.h — C API of Aether, a local publish/subscribe broker over shared memory.
 * Generated from libaether/src/ffi by cbindgen: do not edit; run
 * `AETHER_BLESS=1 cargo test -p aether --test header` to regenerate.
 *
 * Every call returning int returns AETHER_OK (0) or a negative aether_status,
 * and on failure sets the thread's aether_last_error(), except the two that
 * return a descriptor (aether_client_notices_fd, aether_subscriber_fd: >= 0,
 * or a negative status with aether_last_error() set). Out-parameters
 * are written only on success (except *len on AETHER_E_TOO_LARGE, see
 * aether_receive).
 * Handles are opaque; each is freed by its _close call, which accepts NULL.
 * When the daemon dies, every call on its handles fails with
 * AETHER_E_UNAVAILABLE within a second (a publish at once; a blocked receive
 * or reliable publish within 200 ms): none reports success into the dead
 * daemon's segment. The library never reconnects by itself: call
 * aether_publisher_reopen / aether_subscriber_reopen (one call each) once a
 * daemon is back, or close and open again (aether_connect for a client).
 * An aether_client may be shared by threads; a publisher or subscriber is
 * used by one thread at a time.
 *
 * Link: cc app.c $(pkg-config --cflags --libs aether)
 */

#ifndef AETHER_H
#define AETHER_H

#include <stddef.h>
#include <stdint.h>
/* The version of this header. aether_version() gives the library's. */
#define AETHER_VERSION_MAJOR 0
#define AETHER_VERSION_MINOR 1
#define AETHER_VERSION_PATCH 0
#define AETHER_VERSION "0.1.0"
/* For #if: MAJOR * 10000 + MINOR * 100 + PATCH. */
#define AETHER_VERSION_NUMBER 100

/* aether_topic_config.retain_bytes, .retain_seconds: not set, the daemon's
 * [log] value applies (what aether_topic_config_default() puts there);
 * 0 means no limit for the topic. */
#define AETHER_RETAIN_DEFAULT UINT64_MAX


/**
 * How a subscriber gets its messages (`aether_subscriber_config.delivery`).
 */
typedef enum aether_delivery {
  /**
   * Straight from the topic's shared-memory ring (default; zero-copy views).
   */
  AETHER_DELIVERY_SHM = 0,
  /**
   * Through a POSIX message queue that a daemon thread fills from the ring:
   * `aether_subscriber_fd` gives a descriptor to poll. Messages are copied
   * (`aether_receive_view` fails with `AETHER_E_INVALID`); one larger than the
   * queue's message size (at most /proc/sys/fs/mqueue/msgsize_max - 24 bytes)
   * is skipped, counted (`aether_subscriber_too_large`) and reported with an
   * `AETHER_NOTICE_TOO_LARGE` notice.
   */
  AETHER_DELIVERY_MQUEUE = 1,
} aether_delivery;

/**
 * Whether a topic is logged to disk (`aether_topic_config.durability`).
 */
typedef enum aether_durability {
  /**
   * In memory only (default).
   */
  AETHER_DURABILITY_NONE = 0,
  /**
   * The daemon logs every message to a write-ahead log under its state
   * directory: subscribers may start in the past, and the topic comes
   * back numbered on after a daemon restart. Reliable topics only.
   */
  AETHER_DURABILITY_WAL = 1,
} aether_durability;

/**
 * When a durable topic's log is synced to disk (`aether_topic_config.fsync`).
 */
typedef enum aether_fsync {
  /**
   * Never: the kernel writes back when it likes (default). Survives a
   * crash of any process, the daemon's included; not a power loss.
   */
  AETHER_FSYNC_NEVER = 0,
  /**
   * Every `fsync_interval_ms`: a power loss loses at most about that much.
   */
  AETHER_FSYNC_INTERVAL = 1,
  /**
   * Before a publish returns (publishers waiting together share one
   * sync): a publish that returned `AETHER_OK` survives a power loss.
   */
  AETHER_FSYNC_ALWAYS = 2,
} aether_fsync;

/**
 * Where a reliable publisher puts its large messages, 32 KiB and up
 * (`aether_publisher_set_large_laps`).
 */
typedef enum aether_large_laps {
  /**
   * Every lap of the ring whole: the ring holds its size of messages.
   */
  AETHER_LARGE_LAPS_WHOLE = 0,
  /**
   * Each lap only to its first 256 KiB (or four messages), so that the
   * publisher writes memory still in its cache: best when subscribers
   * read little of each message and keep up. Costs buffering: until a
   * subscriber passes a lap's end, the ring holds only the messages at
   * the next lap's start, so code that publishes a batch before reading
   * it (in one thread, say) may wait for itself.
   */
  AETHER_LARGE_LAPS_SHORT = 1,
  /**
   * Short laps or whole ones, whichever the publisher measures faster,
   * tried again now and then.
   */
  AETHER_LARGE_LAPS_MEASURED = 2,
  /**
   * A lap cut short past its first 256 KiB (or four messages) only when
   * every subscriber has read everything before (default): subscribers
   * that keep up get the short laps' speed, those behind get whole laps,
   * and the ring still holds its size of messages (a subscriber at the
   * cut counts as past it).
   */
  AETHER_LARGE_LAPS_CAUGHT_UP = 3,
} aether_large_laps;

/**
 * What an `aether_notice` says.
 */
typedef enum aether_notice_kind {
  /**
   * `topic` was deleted (sent to clients with a publisher or subscriber on it).
   */
  AETHER_NOTICE_TOPIC_DELETED = 1,
  /**
   * The broker is shutting down: publishing is refused; subscribers read
   * what is left, then get `AETHER_E_SHUTDOWN`.
   */
  AETHER_NOTICE_DRAINING = 2,
  /**
   * A subscriber of this client on `topic` lost `count` more messages;
   * `seq` is where it was when the broker looked.
   */
  AETHER_NOTICE_LAGGED = 3,
  /**
   * An `AETHER_DELIVERY_MQUEUE` subscriber on `topic` skipped message `seq`
   * of `len` bytes: too large for its queue (`count` is 1).
   */
  AETHER_NOTICE_TOO_LARGE = 4,
  /**
   * The broker dropped `count` notices for this client: its control queue was full.
   */
  AETHER_NOTICE_DROPPED = 5,
} aether_notice_kind;

/**
 * Delivery policy of a topic.
 */
typedef enum aether_policy {
  /**
   * Publishers never wait; a subscriber lapped by the ring is told how many messages it lost.
   */
  AETHER_POLICY_LOSSY = 0,
  /**
   * Publishers wait (with a timeout) for the slowest subscriber; nothing is lost.
   */
  AETHER_POLICY_RELIABLE = 1,
} aether_policy;

/**
 * Where a subscriber begins (`aether_subscriber_config.start`).
 */
typedef enum aether_start {
  /**
   * With the next message published (default).
   */
  AETHER_START_LATEST = 0,
  /**
   * With the oldest message a durable topic's log holds.
   */
  AETHER_START_EARLIEST = 1,
  /**
   * With message number `start_value` (the oldest logged, if older).
   */
  AETHER_START_SEQ = 2,
  /**
   * With the first message published at or after `start_value`
   * (CLOCK_REALTIME nanoseconds).
   */
  AETHER_START_TIME = 3,
  /**
   * After what the durable subscription `durable_name` last committed
   * (`aether_subscriber_commit`); a new name: the oldest logged.
   */
  AETHER_START_DURABLE = 4,
} aether_start;

/**
 * Status codes returned by every `int`-returning call: `AETHER_OK` (0) or negative.
 */
typedef enum aether_status {
  AETHER_OK = 0,
  AETHER_E_INVALID = -1,
  AETHER_E_TIMEOUT = -2,
  AETHER_E_NOT_FOUND = -3,
  AETHER_E_EXISTS = -4,
  AETHER_E_PERMISSION = -5,
  AETHER_E_TOO_LARGE = -6,
  AETHER_E_UNAVAILABLE = -7,
  AETHER_E_SHUTDOWN = -8,
  AETHER_E_CORRUPT = -9,
  AETHER_E_OVERWRITTEN = -10,
  AETHER_E_PROTOCOL = -11,
  AETHER_E_LIMIT = -12,
  AETHER_E_NOMEM = -13,
  AETHER_E_IO = -14,
  AETHER_E_INTERNAL = -15,
} aether_status;

/**
 * How a subscriber waits for messages.
 */
typedef enum aether_wait {
  /**
   * Busy-spin: lowest latency, burns a core while waiting.
   */
  AETHER_WAIT_SPIN = 0,
  /**
   * Spin, then yield the CPU between checks.
   */
  AETHER_WAIT_YIELD = 1,
  /**
   * Spin, then sleep on a futex (default).
   */
  AETHER_WAIT_FUTEX = 2,
} aether_wait;

/**
 * A connection to the broker (opaque).
 */
typedef struct aether_client aether_client;

/**
 * A publisher on one topic (opaque).
 */
typedef struct aether_publisher aether_publisher;

/**
 * A subscriber on one topic (opaque).
 */
typedef struct aether_subscriber aether_subscriber;

/**
 * Topic settings. Start from `aether_topic_config_default()` and edit.
 */
typedef struct aether_topic_config {
  /**
   * Set by `aether_topic_config_default()`; lets the struct grow compatibly:
   * a bigger size (a newer header) is accepted when the bytes this library
   * does not know are zero, a smaller one when it is an older layout's.
   */
  size_t struct_size;
  /**
   * An `aether_policy` value (default `AETHER_POLICY_LOSSY`).
   */
  uint32_t policy;
  /**
   * Bytes in the ring, a power of two from 4096 to 2^30; 0 (the default):
   * sized for `max_message`, the smallest ring that takes it and at
   * least 1 MiB (64 KiB messages: 1 MiB; 1 MiB messages: 4 MiB).
   */
  uint64_t ring_size;
  /**
   * Largest message in bytes, at most ring_size / 2 - 32 (default 64 KiB).
   */
  uint64_t max_message;
  /**
   * Most subscribers at once, 1 to 1024 (default 64).
   */
  uint32_t max_subscribers;
  /**
   * An `aether_durability` value (default `AETHER_DURABILITY_NONE`). Added
   * after the first layout: a struct_size of 40 (without this field and
   * the next two) is still accepted and means not durable.
   */
  uint32_t durability;
  /**
   * A durable topic's `aether_fsync` value (default `AETHER_FSYNC_NEVER`).
   */
  uint32_t fsync;
  /**
   * `AETHER_FSYNC_INTERVAL`: milliseconds between syncs, 1 to 60000.
   */
  uint32_t fsync_interval_ms;
  /**
   * 1: put the ring on 2 MiB huge pages, which must be reserved
   * (`sysctl vm.nr_hugepages=N`; too few free: `AETHER_ERR_LIMIT`).
   * Default 0. Added after `fsync_interval_ms`: a struct_size of 48
   * (without it) is still accepted and means normal pages.
   */
  uint32_t huge_pages;
  /**
   * A durable topic's own log size limit: its oldest log files are
   * removed while the log is bigger. `AETHER_RETAIN_DEFAULT` (UINT64_MAX,
   * what `aether_topic_config_default()` sets): the daemon's `[log]
   * retain_bytes` applies, and follows its reloads; 0: no limit for this
   * topic, whatever `[log]` says; else bytes. Anything but
   * `AETHER_RETAIN_DEFAULT` on a topic that is not durable is
   * `AETHER_E_INVALID`. Added after `huge_pages`: a struct_size of 56
   * (without this field and the next) is still accepted and means
   * `AETHER_RETAIN_DEFAULT` for both.
   */
  uint64_t retain_bytes;
  /**
   * A durable topic's own log age limit, in seconds: log files whose
   * every message is older are removed. `AETHER_RETAIN_DEFAULT`: the
   * daemon's `[log] retain_seconds`; 0: kept forever; as `retain_bytes`.
   */
  uint64_t retain_seconds;
} aether_topic_config;

/**
 * Subscriber settings. Start from `aether_subscriber_config_default()` and edit.
 */
typedef struct aether_subscriber_config {
  /**
   * Set by `aether_subscriber_config_default()`.
   */
  size_t struct_size;
  /**
   * An `aether_wait` value (default `AETHER_WAIT_FUTEX`).
   */
  uint32_t wait;
  /**
   * Checks made by spinning before yielding or sleeping (default 2000;
   * with `AETHER_WAIT_FUTEX`, fewer, down to 16, while sleeps outlast a
   * whole spin).
   */
  uint32_t spin;
  /**
   * After how long a record left half-written by a dead publisher is skipped (default 100 ms).
   */
  uint64_t abandon_timeout_ns;
  /**
   * An `aether_delivery` value (default `AETHER_DELIVERY_SHM`). Added after
   * the first layout: a struct_size of 24 (without this field) is still
   * accepted and means `AETHER_DELIVERY_SHM`.
   */
  uint32_t delivery;
  /**
   * An `aether_start` value (default `AETHER_START_LATEST`); anything
   * else reads a durable topic's log first, then passes to the live
   * ring with no gap and no duplicate (`AETHER_DELIVERY_SHM` only).
   * Added after the second layout (struct_size 32: latest).
   */
  uint32_t start;
  /**
   * `AETHER_START_SEQ`: the seq; `AETHER_START_TIME`: the time (ns).
   */
  uint64_t start_value;
  /**
   * `AETHER_START_DURABLE`: the subscription's name (1 to 64 letters,
   * digits, '.', '_', '-'); read during `aether_subscriber_open` only.
   */
  const char *durable_name;
  /**
   * 1: on a durable lossy topic, messages this subscriber was lapped
   * over are read from the log instead of lost (in order, before the
   * ring's next). Default 0. Added after `durable_name`: a struct_size of
   * 48 (without it) is still accepted and means 0.
   */
  uint32_t fill_gaps;
} aether_subscriber_config;

/**
 * A received message. For `aether_receive_view`, `data` points into shared
 * memory and stays valid until `aether_release`.
 */
typedef struct aether_message {
  const void *data;
  size_t len;
  /**
   * Position of the message in the topic's total order.
   */
  uint64_t seq;
  /**
   * Wall-clock time (CLOCK_REALTIME, ns) of `aether_publish`'s call (before
   * any wait for space) or of `aether_commit`; 0 if the publisher sends
   * none (`aether_publisher_set_timestamps`).
   */
  uint64_t timestamp_ns;
} aether_message;

/**
 * A topic's figures (`aether_topic_stats`). Set `struct_size` to
 * `sizeof(aether_topic_statistics)` before the call: a later library fills
 * what this header knows of.
 */
typedef struct aether_topic_statistics {
  /**
   * Set by the caller to `sizeof(aether_topic_statistics)`.
   */
  size_t struct_size;
  /**
   * Messages published so far (the next sequence number).
   */
  uint64_t published;
  /**
   * Publishers open now.
   */
  uint32_t publishers;
  /**
   * Subscribers open now (a durable topic's log writer counts as one).
   */
  uint32_t subscribers;
  /**
   * What its current subscribers lost, summed.
   */
  uint64_t lost;
  /**
   * Loans given up.
   */
  uint64_t aborted;
  /**
   * Reliable claims written over space a just-joined subscriber had not read.
   */
  uint64_t overruns;
  /**
   * Subscribers' sleeps waiting for messages.
   */
  uint64_t waits;
  /**
   * Publishers' sleeps waiting for space.
   */
  uint64_t space_waits;
  /**
   * Futex wake calls.
   */
  uint64_t wakes;
  /**
   * Messages per second over the broker's last sample (about a second).
   */
  double rate_msgs_per_s;
  /**
   * Ring bytes (records with headers) per second, likewise.
   */
  double rate_bytes_per_s;
  /**
   * 1 for a durable topic (then the log figures below mean something).
   */
  uint32_t durable;
  /**
   * Zero (padding, named so that it is never garbage).
   */
  uint32_t _reserved;
  /**
   * Bytes of its log's files on disk.
   */
  uint64_t log_bytes;
  /**
   * The oldest message its log holds.
   */
  uint64_t log_oldest_seq;
  /**
   * The next message its log will write.
   */
  uint64_t log_next_seq;
} aether_topic_statistics;

/**
 * A subscriber's figures (`aether_subscriber_stats`). Set `struct_size` to
 * `sizeof(aether_subscriber_statistics)` before the call.
 */
typedef struct aether_subscriber_statistics {
  /**
   * Set by the caller to `sizeof(aether_subscriber_statistics)`.
   */
  size_t struct_size;
  /**
   * Messages the topic has published so far.
   */
  uint64_t published;
  /**
   * Messages this subscriber received.
   */
  uint64_t delivered;
  /**
   * Messages it missed.
   */
  uint64_t lost;
  /**
   * Messages published that it has not read yet.
   */
  uint64_t lag;
  /**
   * `AETHER_DELIVERY_MQUEUE`: messages skipped as too large for its queue.
   */
  uint64_t too_large;
} aether_subscriber_statistics;

/**
 * A notice from the broker, filled by `aether_client_next_notice`.
 */
typedef struct aether_notice {
  /**
   * An `aether_notice_kind` value.
   */
  uint32_t kind;
  /**
   * The topic, NUL-terminated ("" for `AETHER_NOTICE_DRAINING` and `AETHER_NOTICE_DROPPED`).
   */
  char topic[121];
  /**
   * A sequence number (see the kind), else 0.
   */
  uint64_t seq;
  /**
   * A count of messages or notices (see the kind), else 0.
   */
  uint64_t count;
  /**
   * `AETHER_NOTICE_TOO_LARGE`: the message's length in bytes, else 0.
   */
  uint64_t len;
} aether_notice;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * The library version, e.g. "0.1.0" (the library loaded at run time, which
 * may differ from the header's `AETHER_VERSION_*`). Static storage.
 */
const char *aether_version(void);

/**
 * Default topic settings: lossy, a ring sized for its messages (0: see
 * `ring_size`), 64 KiB messages, 64 subscribers.
 */
struct aether_topic_config aether_topic_config_default(void);

/**
 * Default subscriber settings: futex wait after 2000 spins, 100 ms abandon timeout.
 */
struct aether_subscriber_config aether_subscriber_config_default(void);

/**
 * Pins the calling thread to the `n` CPUs at `cpus` (sched_setaffinity):
 * a publisher's or subscriber's thread kept on its core.
 * Errors: `AETHER_E_INVALID` (`cpus` NULL or `n` 0, or a CPU this process
 * may not use: the message names those it may; the thread's affinity is
 * left as it was), `AETHER_E_IO`.
 */
int aether_set_thread_affinity(const uint32_t *cpus, size_t n);

/**
 * This thread's last error message (empty if none). Valid until the next
 * failing call on this thread; never NULL.
 */
const char *aether_last_error(void);

/**
 * A static description of a status code; never NULL.
 */
const char *aether_strerror(int status);

/**
 * Connects to the broker at `socket_path` (NULL: `$AETHER_SOCKET`, else this
 * user's private broker: `$XDG_RUNTIME_DIR/aether/aetherd.sock`, else
 * `/tmp/aether-<uid>/aetherd.sock`; the system broker is
 * `/run/aether/aetherd.sock`, used only when named). If no broker answers,
 * starts a private `aetherd` unless `AETHER_NO_AUTOSTART=1` (never on the
 * system broker's socket, nor in another user's directory).
 * On success `*out` owns a client; free it with `aether_client_close`.
 * Errors: `AETHER_E_UNAVAILABLE` (no broker answers and none could be
 * started; the message says which socket, from where, and why),
 * `AETHER_E_PERMISSION` (the socket's permissions keep this user out, or
 * the process listening there is not a daemon this user may trust),
 * `AETHER_E_LIMIT` (the broker's client limit or this uid's connection
 * quota), `AETHER_E_PROTOCOL` (a broker speaking another protocol
 * version), `AETHER_E_INVALID` (`out` NULL, `socket_path` not UTF-8 or too
 * long), `AETHER_E_IO`.
 */
int aether_connect(const char *socket_path, struct aether_client **out);

/**
 * Closes a client. Publishers and subscribers opened from it stay usable
 * until they are closed. NULL is ignored.
 */
void aether_client_close(struct aether_client *c);

/**
 * Creates `topic` with `cfg` (NULL: defaults). Topic names are 1 to 120 bytes
 * of letters, digits, '.', '_' and '-', not starting with '.'.
 * Errors: `AETHER_E_EXISTS`, `AETHER_E_INVALID` (a bad name or setting,
 * NULL), `AETHER_E_PERMISSION` (no `admin` right on the topic),
 * `AETHER_E_LIMIT` (the broker's topic or segment limits, or this uid's
 * quotas), `AETHER_E_TOO_LARGE` (`max_message` over the broker's limit),
 * `AETHER_E_SHUTDOWN` (the broker is draining), `AETHER_E_UNAVAILABLE`.
 */
int aether_topic_create(struct aether_client *c,
                        const char *topic,
                        const struct aether_topic_config *cfg);

/**
 * Deletes `topic`. Open handles keep their mapping; new opens fail, and
 * open handles get `AETHER_E_NOT_FOUND` (subscribers once they have read
 * what was published).
 * Errors: `AETHER_E_NOT_FOUND`, `AETHER_E_PERMISSION` (no `admin` right),
 * `AETHER_E_INVALID` (NULL), `AETHER_E_SHUTDOWN`, `AETHER_E_UNAVAILABLE`.
 */
int aether_topic_delete(struct aether_client *c, const char *topic);

/**
 * Opens a publisher on an existing topic. Free with `aether_publisher_close`.
 * Its reliable publishes wait up to 5 s for the slowest subscriber
 * (`aether_publisher_set_timeout` changes it).
 * Errors: `AETHER_E_NOT_FOUND`, `AETHER_E_PERMISSION` (no `publish`
 * right), `AETHER_E_LIMIT` (the topic's 64 publishers, or this uid's or
 * client's slot quota), `AETHER_E_INVALID` (NULL), `AETHER_E_CORRUPT` (a
 * segment that fails its checks), `AETHER_E_SHUTDOWN`, `AETHER_E_UNAVAILABLE`.
 */
int aether_publisher_open(struct aether_client *c,
                          const char *topic,
                          struct aether_publisher **out);

/**
 * Publishes a copy of `len` bytes at `data` (`data` may be NULL when `len` is 0).
 * Errors: `AETHER_E_TOO_LARGE` (over the topic's max_message), `AETHER_E_TIMEOUT`
 * (reliable topic whose slowest subscriber stayed a full ring behind for
 * the publisher's timeout), `AETHER_E_NOT_FOUND` (the topic was deleted),
 * `AETHER_E_SHUTDOWN` (the broker is draining), `AETHER_E_UNAVAILABLE` (the
 * daemon died, or kicked this client), `AETHER_E_INVALID` (NULL `data`
 * with `len` > 0, a loan outstanding, a handle of the parent process after
 * fork), `AETHER_E_CORRUPT` (the segment's shared state is impossible).
 */
int aether_publish(struct aether_publisher *p, const void *data, size_t len);

/**
 * Loans `len` bytes of the ring: write the message at `*buf`, then
 * `aether_commit` (publish) or `aether_abort`. One loan at a time per publisher.
 * Errors: as `aether_publish` (`AETHER_E_INVALID` also for a NULL `buf`).
 */
int aether_loan(struct aether_publisher *p, size_t len, void **buf);

/**
 * Publishes the first `len` bytes (at most the loaned length) of the outstanding loan.
 * Errors: `AETHER_E_INVALID` (no loan, or `len` over the loaned length),
 * `AETHER_E_UNAVAILABLE` (the daemon died or kicked this client meanwhile:
 * nothing is published).
 */
int aether_commit(struct aether_publisher *p, size_t len);

/**
 * Gives up the outstanding loan; nothing is published.
 * Errors: `AETHER_E_INVALID` (no loan outstanding, NULL).
 */
int aether_abort(struct aether_publisher *p);

/**
 * Carries the publisher on after its daemon died (its calls then fail with
 * `AETHER_E_UNAVAILABLE`) or its topic was deleted (`AETHER_E_NOT_FOUND`):
 * connects again to the same socket (starting a daemon if its client was
 * allowed to), makes the topic again with the same parameters if it does
 * not exist, and takes a new slot. An outstanding loan is given up. The
 * library never does this by itself. On error the handle is left as it
 * was and may be reopened again later. Not thread-safe with other calls
 * on the same publisher.
 */
int aether_publisher_reopen(struct aether_publisher *p);

/**
 * Sets how long a publish (or loan) on a reliable topic waits for the
 * slowest subscriber before it fails with `AETHER_E_TIMEOUT`: `timeout_ns`
 * nanoseconds (negative: forever; 0: never wait). The default is 5 s.
 * Errors: `AETHER_E_INVALID` (NULL).
 */
int aether_publisher_set_timeout(struct aether_publisher *p, int64_t timeout_ns);

/**
 * Sets where this publisher puts messages of 32 KiB and up on a reliable
 * topic: an `aether_large_laps` value (`AETHER_LARGE_LAPS_CAUGHT_UP`, the
 * default unless the `AETHER_LARGE_LAPS` environment variable says
 * `whole`, `short` or `measured`). Kept across `aether_publisher_reopen`.
 * Lossy topics always use whole laps (accepted, no effect). Subscribers
 * need nothing: any subscriber reads every kind.
 * Errors: `AETHER_E_INVALID` (an unknown value, NULL).
 */
int aether_publisher_set_large_laps(struct aether_publisher *p, uint32_t laps);

/**
 * Whether this publisher's messages carry the time they were published
 * (`on` = 1, the default) or 0 in `aether_message.timestamp_ns` (`on` = 0).
 * Reading the clock is about a third of a small publish (~10 of ~30 ns).
 * A subscriber starting at a time (`time=` start) takes a message without
 * one by those before it: passed over before the first message stamped at
 * or after the time, delivered after. Kept across `aether_publisher_reopen`.
 * Errors: `AETHER_E_INVALID` (`on` neither 0 nor 1, NULL).
 */
int aether_publisher_set_timestamps(struct aether_publisher *p, int on);

/**
 * Closes a publisher (an outstanding loan is aborted). NULL is ignored.
 */
void aether_publisher_close(struct aether_publisher *p);

/**
 * Opens a subscriber on an existing topic; it receives messages published
 * from now on, or with a `start` (a durable topic) the topic's logged
 * history from there first. `cfg` NULL: defaults. Free with
 * `aether_subscriber_close`.
 * Errors: `AETHER_E_NOT_FOUND`, `AETHER_E_LIMIT` (topic has max_subscribers,
 * or this uid's or client's slot quota, or its message-queue quota),
 * `AETHER_E_PERMISSION` (no `subscribe` right), `AETHER_E_INVALID` (NULL,
 * a config not from `aether_subscriber_config_default`, an unknown
 * delivery, wait or start, a start or `fill_gaps` on a topic that is not
 * durable, a seq not published yet, a bad durable name), `AETHER_E_EXISTS` (that durable subscription is in use),
 * `AETHER_E_CORRUPT` (also: a damaged log file, when the history reaches it), `AETHER_E_SHUTDOWN`,
 * `AETHER_E_UNAVAILABLE`, `AETHER_E_IO` (a message queue could not be made).
 */
int aether_subscriber_open(struct aether_client *c,
                           const char *topic,
                           const struct aether_subscriber_config *cfg,
                           struct aether_subscriber **out);

/**
 * Copies the next message into `buf` (capacity `cap`) and sets `*len`.
 * Waits up to `timeout_ns` (negative: forever; 0: do not wait).
 * Errors: `AETHER_E_TIMEOUT`; `AETHER_E_TOO_LARGE` when the message exceeds
 * `cap`: then `*len` is set to its length and the message stays unread;
 * `AETHER_E_NOT_FOUND` (the topic was deleted, once everything published
 * before was read), `AETHER_E_SHUTDOWN` (the broker drained),
 * `AETHER_E_UNAVAILABLE` (the daemon died, or kicked this client),
 * `AETHER_E_INVALID` (NULL, a view outstanding, a handle of the parent
 * process after fork), `AETHER_E_CORRUPT`.
 * On a lossy topic, check `aether_subscriber_lost` for messages it missed.
 */
int aether_receive(struct aether_subscriber *s,
                   void *buf,
                   size_t cap,
                   size_t *len,
                   int64_t timeout_ns);

/**
 * Borrows the next message in place (zero-copy) into `*msg`, waiting up to
 * `timeout_ns`. `msg->data` stays valid until `aether_release`; hold one view
 * at a time. On a lossy topic the publisher may overwrite a view that is held
 * too long: `aether_release` then returns `AETHER_E_OVERWRITTEN`, and the
 * bytes read from it must be discarded.
 * Errors: as `aether_receive` (not `AETHER_E_TOO_LARGE`), and
 * `AETHER_E_INVALID` for an `AETHER_DELIVERY_MQUEUE` subscriber (its
 * messages arrive copied: use `aether_receive`).
 */
int aether_receive_view(struct aether_subscriber *s,
                        struct aether_message *msg,
                        int64_t timeout_ns);

/**
 * Ends the view `msg` got from `aether_receive_view`.
 * Errors: `AETHER_E_OVERWRITTEN` (lossy topic: the view was overwritten while
 * held, and is counted lost), `AETHER_E_INVALID` (not the view held).
 */
int aether_release(struct aether_subscriber *s, struct aether_message *msg);

/**
 * A durable subscription (`AETHER_START_DURABLE`): records with the broker
 * that every message this subscriber delivered (received, or viewed and
 * released) is done with, so that the next subscriber of that name (after
 * this one closes or crashes, or the broker restarts) begins after it.
 * Messages delivered after the last commit come again then: at least once.
 * One request to the broker.
 * Errors: `AETHER_E_INVALID` (NULL, not a durable subscription, a handle of
 * the parent process after fork), `AETHER_E_NOT_FOUND` (the topic was
 * deleted), `AETHER_E_UNAVAILABLE` (the daemon died), `AETHER_E_IO` (the
 * broker could not write its state).
 */
int aether_subscriber_commit(struct aether_subscriber *s);

/**
 * Where the message this subscriber received (or viewed) last was first
 * published: for one another broker's bridge brought here
 * (docs/BRIDGE.md), `*broker` is that broker's id (`aether_broker_id` of
 * its name, never 0) and `*seq` its sequence number there; for one
 * published here, both are 0. Errors: `AETHER_E_INVALID` (a NULL argument).
 */
int aether_subscriber_origin(const struct aether_subscriber *s, uint64_t *broker, uint64_t *seq);

/**
 * The id of the broker named `name` in message origins
 * (`aether_subscriber_origin`); 0 for a NULL or non-UTF-8 name.
 */
uint64_t aether_broker_id(const char *name);

/**
 * Fills `*out` with `topic`'s figures as the broker keeps them (one
 * request): `out->struct_size` must be set to `sizeof(aether_topic_statistics)`.
 * Errors: `AETHER_E_INVALID` (NULL, a bad name or struct_size),
 * `AETHER_E_NOT_FOUND`, `AETHER_E_PERMISSION` (no right on the topic:
 * publish, subscribe or monitor), `AETHER_E_UNAVAILABLE`.
 */
int aether_topic_stats(struct aether_client *c,
                       const char *topic,
                       struct aether_topic_statistics *out);

/**
 * Fills `*out` with this subscriber's figures, read from the topic's
 * segment (no request): `out->struct_size` must be set to
 * `sizeof(aether_subscriber_statistics)`.
 * Errors: `AETHER_E_INVALID` (NULL, a bad struct_size).
 */
int aether_subscriber_stats(const struct aether_subscriber *s,
                            struct aether_subscriber_statistics *out);

/**
 * Messages this subscriber missed so far (lapped on a lossy topic, or left
 * half-written by a dead publisher). 0 for NULL.
 */
uint64_t aether_subscriber_lost(const struct aether_subscriber *s);

/**
 * A descriptor to poll (poll, epoll, select, an event loop) for POLLIN: it
 * is readable when `aether_receive` may not come back empty. For
 * `AETHER_DELIVERY_MQUEUE` it is the subscriber's queue; for
 * `AETHER_DELIVERY_SHM` an eventfd the broker makes on the first call (one
 * request to it), which publishers signal only while the subscriber is
 * armed: from a receive that came back `AETHER_E_TIMEOUT` (timeout 0 or
 * not) until its next receive. So the loop is: poll; then
 * `aether_receive`/`aether_receive_view` with timeout 0 until
 * `AETHER_E_TIMEOUT`; poll again. A subscriber that never calls this costs
 * publishers nothing. Returns the descriptor (>= 0), owned by the
 * subscriber (valid until `aether_subscriber_close`; do not read or close
 * it), or a negative `aether_status` (`AETHER_E_INVALID` for NULL,
 * `AETHER_E_UNAVAILABLE` when the broker is gone, as any request).
 */
int aether_subscriber_fd(const struct aether_subscriber *s);

/**
 * Messages the broker skipped for an `AETHER_DELIVERY_MQUEUE` subscriber
 * because they exceed its queue's message size (neither delivered nor
 * lost; each also reported by an `AETHER_NOTICE_TOO_LARGE` notice).
 * 0 for shm subscribers and NULL.
 */
uint64_t aether_subscriber_too_large(const struct aether_subscriber *s);

/**
 * The client's control queue, on which the broker posts notices (topic
 * deleted, draining, lagged, message too large): a descriptor to poll for
 * POLLIN, then read with `aether_client_next_notice`. The queue is made on
 * the first call (or the first mqueue subscriber); earlier notices are not
 * kept. Returns the descriptor (>= 0), owned by the client (do not read or
 * close it), or a negative `aether_status`. Thread-safe.
 */
int aether_client_notices_fd(struct aether_client *c);

/**
 * Takes the next notice from the client's control queue into `*out`, waiting
 * up to `timeout_ns` (negative: forever; 0: only one already there).
 * Makes the queue on first use, like `aether_client_notices_fd`.
 * Errors: `AETHER_E_TIMEOUT` (none came), `AETHER_E_LIMIT` (no queue could be
 * made: this uid's control-queue quota, or RLIMIT_MSGQUEUE), `AETHER_E_INVALID`
 * (NULL), `AETHER_E_UNAVAILABLE`.
 * Thread-safe; each notice goes to one caller.
 */
int aether_client_next_notice(struct aether_client *c,
                              struct aether_notice *out,
                              int64_t timeout_ns);

/**
 * Carries the subscriber on after its daemon died or its topic was
 * deleted, as `aether_publisher_reopen` does: a new subscriber with the
 * same configuration, reading from the topic's tail as it is now (what was
 * published while no daemon ran is gone; its counts start from zero). An
 * outstanding view is dropped: its `aether_message` must not be used. On
 * error the handle is left as it was.
 */
int aether_subscriber_reopen(struct aether_subscriber *s);

/**
 * Closes a subscriber and frees its slot. NULL is ignored.
 */
void aether_subscriber_close(struct aether_subscriber *s);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* AETHER_H */
