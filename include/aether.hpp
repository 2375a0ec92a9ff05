// aether.hpp — a header-only C++17 wrapper over aether.h (docs/CPP.md).
//
// RAII handles (move-only), errors as exceptions, timeouts as std::chrono
// durations, views as spans; the same defaults and the same semantics as the
// C API, whose header documents every call. Thread safety is the C API's: a
// Client may be shared between threads; a Publisher or Subscriber is used by
// one thread at a time.
//
//   #include <aether.hpp>
//   aether::Client client;                          // default socket
//   client.create_topic("greetings", aether::TopicConfig{}.reliable(), aether::exist_ok);
//   auto sub = client.subscriber("greetings");
//   auto pub = client.publisher("greetings");
//   pub.publish("hello");
//   if (auto msg = sub.receive(std::chrono::seconds(1)))    // a view, released at scope exit
//       std::cout << msg->text() << "\n";
//
// Builds with C++17 (GCC 12, Clang 14); with C++20's <span>, aether::span is
// std::span.
#ifndef AETHER_HPP
#define AETHER_HPP

#include <aether.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#if defined(__has_include)
#if __has_include(<version>)
#include <version>
#endif
#endif
#if defined(__cpp_lib_span) && __cpp_lib_span >= 202002L
#include <span>
#endif

namespace aether {

#if defined(__cpp_lib_span) && __cpp_lib_span >= 202002L
template <class T>
using span = std::span<T>;
#else
/// A pointer and a length (std::span's subset this header needs, for C++17).
template <class T>
class span {
  public:
    constexpr span() noexcept = default;
    constexpr span(T *data, std::size_t size) noexcept : data_(data), size_(size) {}
    constexpr T *data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr std::size_t size_bytes() const noexcept { return size_ * sizeof(T); }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr T &operator[](std::size_t i) const noexcept { return data_[i]; }
    constexpr T *begin() const noexcept { return data_; }
    constexpr T *end() const noexcept { return data_ + size_; }
    constexpr span first(std::size_t n) const noexcept { return span(data_, n); }

  private:
    T *data_ = nullptr;
    std::size_t size_ = 0;
};
#endif

// ---------------------------------------------------------------------------
// Errors

/// The category of the C API's status codes (`aether_status`): message() is
/// `aether_strerror`.
class error_category_impl final : public std::error_category {
  public:
    const char *name() const noexcept override { return "aether"; }
    std::string message(int status) const override { return aether_strerror(status); }
};

inline const std::error_category &error_category() noexcept {
    static const error_category_impl category;
    return category;
}

/// A failed call: `status()` is the C status (`AETHER_E_*`), `what()` the
/// library's message for it (`aether_last_error()` when it failed, which
/// already names the status), `code()` the status as a std::error_code.
class Error : public std::runtime_error {
  public:
    Error(int status, const std::string &message) : std::runtime_error(message), status_(status) {}
    int status() const noexcept { return status_; }
    std::error_code code() const noexcept { return std::error_code(status_, error_category()); }

  private:
    int status_;
};

namespace detail {
/// Throws an Error for a failed status, with this thread's last error message.
inline void check(int status) {
    if (status != AETHER_OK)
        throw Error(status, aether_last_error());
}

/// A C timeout: nanoseconds, negative for forever.
inline int64_t nanos(std::optional<std::chrono::nanoseconds> timeout) {
    return timeout ? static_cast<int64_t>(timeout->count()) : -1;
}

/// Owns a C handle; `Close` frees it.
template <class T, void (*Close)(T *)>
class Handle {
  public:
    Handle() noexcept = default;
    explicit Handle(T *p) noexcept : p_(p) {}
    Handle(Handle &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Handle &operator=(Handle &&o) noexcept {
        if (this != &o) {
            reset();
            p_ = std::exchange(o.p_, nullptr);
        }
        return *this;
    }
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    ~Handle() { reset(); }
    void reset() noexcept {
        if (p_ != nullptr)
            Close(std::exchange(p_, nullptr));
    }
    T *get() const noexcept { return p_; }
    /// The handle, or a clear error when it was moved from or closed.
    T *live(const char *what) const {
        if (p_ == nullptr)
            throw Error(AETHER_E_INVALID, std::string("this ") + what + " was moved from or closed");
        return p_;
    }

  private:
    T *p_ = nullptr;
};
} // namespace detail

// ---------------------------------------------------------------------------
// Configurations: the C structs, from their defaults, with chainable setters.

/// Topic settings (`aether_topic_config`); defaults: lossy, 64 KiB messages,
/// a ring sized for them (`ring_size` 0: 1 MiB, or the smallest that takes
/// one message), 64 subscribers, in memory.
struct TopicConfig {
    aether_topic_config c = aether_topic_config_default();
    TopicConfig &reliable() noexcept { return c.policy = AETHER_POLICY_RELIABLE, *this; }
    TopicConfig &lossy() noexcept { return c.policy = AETHER_POLICY_LOSSY, *this; }
    TopicConfig &ring_size(uint64_t bytes) noexcept { return c.ring_size = bytes, *this; }
    TopicConfig &max_message(uint64_t bytes) noexcept { return c.max_message = bytes, *this; }
    TopicConfig &max_subscribers(uint32_t n) noexcept { return c.max_subscribers = n, *this; }
    /// The ring on 2 MiB huge pages (reserved with `sysctl vm.nr_hugepages`).
    TopicConfig &huge_pages(bool on = true) noexcept { return c.huge_pages = on ? 1 : 0, *this; }
    /// A durable topic (docs/DURABILITY.md): reliable, logged with `fsync`
    /// (`AETHER_FSYNC_*`; `interval_ms` for `AETHER_FSYNC_INTERVAL`).
    TopicConfig &durable(aether_fsync fsync = AETHER_FSYNC_NEVER, uint32_t interval_ms = 0) noexcept {
        c.policy = AETHER_POLICY_RELIABLE;
        c.durability = AETHER_DURABILITY_WAL;
        c.fsync = fsync;
        c.fsync_interval_ms = interval_ms;
        return *this;
    }
    /// A durable topic's own log limits (0: none), over the daemon's `[log]`
    /// ones; `AETHER_RETAIN_DEFAULT` (the default): `[log]`'s.
    TopicConfig &retain_bytes(uint64_t bytes) noexcept { return c.retain_bytes = bytes, *this; }
    TopicConfig &retain_seconds(uint64_t seconds) noexcept { return c.retain_seconds = seconds, *this; }
};

/// Subscriber settings (`aether_subscriber_config`); defaults: futex wait
/// after 2000 spins, 100 ms abandon timeout, shared-memory delivery, latest.
struct SubscriberConfig {
    aether_subscriber_config c = aether_subscriber_config_default();
    SubscriberConfig &wait(aether_wait w, uint32_t spin = 2000) noexcept {
        c.wait = w;
        c.spin = spin;
        return *this;
    }
    SubscriberConfig &delivery(aether_delivery d) noexcept { return c.delivery = d, *this; }
    SubscriberConfig &abandon_timeout(std::chrono::nanoseconds t) noexcept {
        c.abandon_timeout_ns = static_cast<uint64_t>(t.count());
        return *this;
    }
    /// On a durable topic: begin with the oldest message logged.
    SubscriberConfig &from_earliest() noexcept { return c.start = AETHER_START_EARLIEST, *this; }
    /// On a durable topic: begin with message `seq`.
    SubscriberConfig &from_seq(uint64_t seq) noexcept {
        c.start = AETHER_START_SEQ;
        c.start_value = seq;
        return *this;
    }
    /// On a durable topic: begin with the first message published at or after `t`.
    SubscriberConfig &from_time(std::chrono::system_clock::time_point t) noexcept {
        c.start = AETHER_START_TIME;
        c.start_value = static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
        return *this;
    }
    /// On a durable topic: the durable subscription `name` (kept by this
    /// object: it must outlive the subscriber's opening).
    SubscriberConfig &durable(std::string name) {
        name_ = std::move(name);
        c.start = AETHER_START_DURABLE;
        c.durable_name = name_.c_str();
        return *this;
    }
    SubscriberConfig() = default;
    SubscriberConfig(const SubscriberConfig &o) : c(o.c), name_(o.name_) { fix(); }
    SubscriberConfig &operator=(const SubscriberConfig &o) {
        c = o.c;
        name_ = o.name_;
        fix();
        return *this;
    }

  private:
    void fix() noexcept {
        if (c.start == AETHER_START_DURABLE)
            c.durable_name = name_.c_str();
    }
    std::string name_;
};

/// Tag for `Client::create_topic`: an existing topic is fine.
struct ExistOk {};
inline constexpr ExistOk exist_ok{};

// ---------------------------------------------------------------------------
// Publishing

class Publisher;

/// Space loaned in the ring (`aether_loan`): write the message into `bytes()`,
/// then `commit(len)`; abort() gives it up. Leaving scope commits the whole
/// loan unless it was committed or aborted (during stack unwinding it aborts
/// instead: a half-written message is never published).
class Loan {
  public:
    Loan(Loan &&o) noexcept
        : p_(std::exchange(o.p_, nullptr)), bytes_(o.bytes_), exceptions_(o.exceptions_) {}
    Loan &operator=(Loan &&) = delete;
    Loan(const Loan &) = delete;
    Loan &operator=(const Loan &) = delete;
    ~Loan() {
        if (p_ == nullptr)
            return;
        if (std::uncaught_exceptions() > exceptions_)
            aether_abort(p_);
        else
            aether_commit(p_, bytes_.size()); // a destructor cannot throw: use commit() to see errors
    }

    span<std::byte> bytes() const noexcept { return bytes_; }
    /// Publishes the first `len` bytes (default: all of the loan).
    void commit(std::optional<std::size_t> len = std::nullopt) {
        detail::check(aether_commit(live(), len.value_or(bytes_.size())));
        p_ = nullptr;
    }
    void abort() {
        detail::check(aether_abort(live()));
        p_ = nullptr;
    }
    bool active() const noexcept { return p_ != nullptr; }

  private:
    friend class Publisher;
    Loan(aether_publisher *p, span<std::byte> bytes) noexcept
        : p_(p), bytes_(bytes), exceptions_(std::uncaught_exceptions()) {}
    aether_publisher *live() const {
        if (p_ == nullptr)
            throw Error(AETHER_E_INVALID, "this loan was committed or aborted");
        return p_;
    }
    aether_publisher *p_;
    span<std::byte> bytes_;
    int exceptions_;
};

/// Publishes to one topic (`aether_publisher_*`).
class Publisher {
  public:
    Publisher() = default;
    /// Copies `len` bytes as one message.
    void publish(const void *data, std::size_t len) {
        detail::check(aether_publish(h_.live("publisher"), data, len));
    }
    void publish(span<const std::byte> data) { publish(data.data(), data.size()); }
    void publish(std::string_view text) { publish(text.data(), text.size()); }
    /// Loans `len` bytes of the ring to write a message in place.
    Loan loan(std::size_t len) {
        void *buf = nullptr;
        detail::check(aether_loan(h_.live("publisher"), len, &buf));
        return Loan(h_.get(), span<std::byte>(static_cast<std::byte *>(buf), len));
    }
    /// How long a publish on a reliable topic waits for space (nullopt: forever).
    void set_timeout(std::optional<std::chrono::nanoseconds> timeout) {
        detail::check(aether_publisher_set_timeout(h_.live("publisher"), detail::nanos(timeout)));
    }
    /// Where messages of 32 KiB and up go in the ring (default: whole laps).
    void set_large_laps(aether_large_laps laps) {
        detail::check(aether_publisher_set_large_laps(h_.live("publisher"), static_cast<std::uint32_t>(laps)));
    }
    /// Whether messages carry the time they were published (default) or 0.
    void set_timestamps(bool on) { detail::check(aether_publisher_set_timestamps(h_.live("publisher"), on ? 1 : 0)); }
    /// After the daemon died or the topic was deleted: reconnect and go on.
    void reopen() { detail::check(aether_publisher_reopen(h_.live("publisher"))); }
    void close() noexcept { h_.reset(); }
    aether_publisher *native() const noexcept { return h_.get(); }

  private:
    friend class Client;
    explicit Publisher(aether_publisher *p) noexcept : h_(p) {}
    detail::Handle<aether_publisher, aether_publisher_close> h_;
};

// ---------------------------------------------------------------------------
// Receiving

/// A received message borrowed in place (`aether_receive_view`): valid until
/// release() or the end of its scope, whichever comes first. On a lossy
/// topic the publisher may overwrite it meanwhile: `release()` then throws
/// `Error` with `AETHER_E_OVERWRITTEN` (copy what you need, then release).
class Message {
  public:
    Message(Message &&o) noexcept : s_(std::exchange(o.s_, nullptr)), m_(o.m_) {}
    Message &operator=(Message &&) = delete;
    Message(const Message &) = delete;
    Message &operator=(const Message &) = delete;
    ~Message() {
        if (s_ != nullptr)
            aether_release(s_, &m_);
    }

    span<const std::byte> bytes() const noexcept {
        return span<const std::byte>(static_cast<const std::byte *>(m_.data), m_.len);
    }
    std::string_view text() const noexcept {
        return std::string_view(static_cast<const char *>(m_.data), m_.len);
    }
    std::size_t size() const noexcept { return m_.len; }
    uint64_t seq() const noexcept { return m_.seq; }
    /// When it was published (CLOCK_REALTIME).
    std::chrono::system_clock::time_point timestamp() const noexcept {
        return std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::nanoseconds(m_.timestamp_ns)));
    }
    /// Ends the view now (throws `AETHER_E_OVERWRITTEN` as described above).
    void release() {
        if (s_ == nullptr)
            throw Error(AETHER_E_INVALID, "this message was already released");
        detail::check(aether_release(std::exchange(s_, nullptr), &m_));
    }

  private:
    friend class Subscriber;
    Message(aether_subscriber *s, aether_message m) noexcept : s_(s), m_(m) {}
    aether_subscriber *s_;
    aether_message m_;
};

/// Receives from one topic in publication order (`aether_subscriber_*`).
class Subscriber {
  public:
    Subscriber() = default;
    /// The next message as a view, waiting up to `timeout` (nullopt: forever);
    /// nullopt when none came in time. One view at a time per subscriber.
    std::optional<Message> receive(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
        aether_message m{};
        int rc = aether_receive_view(h_.live("subscriber"), &m, detail::nanos(timeout));
        if (rc == AETHER_E_TIMEOUT)
            return std::nullopt;
        detail::check(rc);
        return Message(h_.get(), m);
    }
    /// Copies the next message into `buf`; returns its size, or nullopt on
    /// timeout. A message larger than `buf` stays unread: `Error` with
    /// `AETHER_E_TOO_LARGE`.
    std::optional<std::size_t> receive_into(span<std::byte> buf,
                                            std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
        std::size_t len = 0;
        int rc = aether_receive(h_.live("subscriber"), buf.data(), buf.size(), &len, detail::nanos(timeout));
        if (rc == AETHER_E_TIMEOUT)
            return std::nullopt;
        detail::check(rc);
        return len;
    }
    /// This subscriber's figures (published, delivered, lost, lag), from the segment.
    aether_subscriber_statistics stats() const {
        aether_subscriber_statistics st{};
        st.struct_size = sizeof st;
        detail::check(aether_subscriber_stats(h_.live("subscriber"), &st));
        return st;
    }
    /// A durable subscription: records that every message delivered so far is done with.
    void commit() { detail::check(aether_subscriber_commit(h_.live("subscriber"))); }
    uint64_t lost() const noexcept { return aether_subscriber_lost(h_.get()); }
    /// A descriptor to poll for POLLIN (see `aether_subscriber_fd`).
    int fd() const {
        int fd = aether_subscriber_fd(h_.live("subscriber"));
        if (fd < 0)
            detail::check(fd);
        return fd;
    }
    void reopen() { detail::check(aether_subscriber_reopen(h_.live("subscriber"))); }
    void close() noexcept { h_.reset(); }
    aether_subscriber *native() const noexcept { return h_.get(); }

  private:
    friend class Client;
    explicit Subscriber(aether_subscriber *s) noexcept : h_(s) {}
    detail::Handle<aether_subscriber, aether_subscriber_close> h_;
};

// ---------------------------------------------------------------------------
// The connection

/// A connection to the broker (`aether_connect`): the default socket
/// (`$AETHER_SOCKET`, else this user's private broker, started if none runs),
/// or `socket_path`.
class Client {
  public:
    Client() : Client(nullptr) {}
    explicit Client(const std::string &socket_path) : Client(socket_path.c_str()) {}
    explicit Client(const char *socket_path) {
        aether_client *c = nullptr;
        detail::check(aether_connect(socket_path, &c));
        h_ = detail::Handle<aether_client, aether_client_close>(c);
    }

    void create_topic(const std::string &topic, const TopicConfig &cfg = TopicConfig{}) {
        detail::check(aether_topic_create(h_.live("client"), topic.c_str(), &cfg.c));
    }
    /// As above; an existing topic is fine.
    void create_topic(const std::string &topic, const TopicConfig &cfg, ExistOk) {
        int rc = aether_topic_create(h_.live("client"), topic.c_str(), &cfg.c);
        if (rc != AETHER_E_EXISTS)
            detail::check(rc);
    }
    /// `topic`'s figures as the broker keeps them (one request).
    aether_topic_statistics topic_stats(const std::string &topic) {
        aether_topic_statistics st{};
        st.struct_size = sizeof st;
        detail::check(aether_topic_stats(h_.live("client"), topic.c_str(), &st));
        return st;
    }
    void delete_topic(const std::string &topic) {
        detail::check(aether_topic_delete(h_.live("client"), topic.c_str()));
    }
    Publisher publisher(const std::string &topic) {
        aether_publisher *p = nullptr;
        detail::check(aether_publisher_open(h_.live("client"), topic.c_str(), &p));
        return Publisher(p);
    }
    Subscriber subscriber(const std::string &topic, const SubscriberConfig &cfg = SubscriberConfig{}) {
        aether_subscriber *s = nullptr;
        detail::check(aether_subscriber_open(h_.live("client"), topic.c_str(), &cfg.c, &s));
        return Subscriber(s);
    }
    void close() noexcept { h_.reset(); }
    aether_client *native() const noexcept { return h_.get(); }

  private:
    detail::Handle<aether_client, aether_client_close> h_;
};

/// The library's version at run time (the header's is AETHER_VERSION).
inline std::string_view version() noexcept { return aether_version(); }

} // namespace aether

#endif // AETHER_HPP
