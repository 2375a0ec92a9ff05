// wrapper.cpp — every part of aether.hpp against a running broker.
// Usage: wrapper SOCKET PREFIX
//
// Across processes (a forked child publishes with its own client), loans
// committed at scope exit, committed short, aborted, and aborted by an
// exception; views released at scope exit; copies; errors as aether::Error
// with their status and message; move-only handles; a durable topic read
// from its log and through a committed durable subscription. Topics are
// PREFIX-* and deleted at the end. Exits 1 if any check failed.
#include <aether.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            std::fprintf(stderr, "wrapper.cpp:%d: check failed: %s\n", __LINE__, #cond);          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

// The status of the aether::Error `f` throws (AETHER_OK if none).
template <class F>
static int status_of(F &&f) {
    try {
        f();
    } catch (const aether::Error &e) {
        if (std::strlen(e.what()) == 0) {
            std::fprintf(stderr, "wrapper.cpp: an Error without a message (status %d)\n", e.status());
            failures++;
        }
        CHECK(e.code().category() == aether::error_category());
        CHECK(e.code().value() == e.status());
        return e.status();
    }
    return AETHER_OK;
}

static_assert(!std::is_copy_constructible_v<aether::Client>);
static_assert(!std::is_copy_constructible_v<aether::Publisher>);
static_assert(!std::is_copy_constructible_v<aether::Subscriber>);
static_assert(!std::is_copy_constructible_v<aether::Message>);
static_assert(!std::is_copy_constructible_v<aether::Loan>);
static_assert(std::is_nothrow_move_constructible_v<aether::Publisher>);
static_assert(std::is_nothrow_move_constructible_v<aether::Subscriber>);
static_assert(std::is_nothrow_move_assignable_v<aether::Client>);
static_assert(std::is_base_of_v<std::runtime_error, aether::Error>);

// A child process publishes `n` messages "m<i>" with its own client: half
// copied, half written in place through a loan.
static void publish_from_child(const std::string &socket, const std::string &topic, int n) {
    pid_t pid = fork();
    if (pid == 0) {
        int rc = 0;
        try {
            aether::Client c(socket);
            auto p = c.publisher(topic);
            for (int i = 0; i < n; i++) {
                std::string m = "m" + std::to_string(i);
                if (i % 2 == 0) {
                    p.publish(m);
                } else {
                    auto loan = p.loan(m.size());
                    std::memcpy(loan.bytes().data(), m.data(), m.size());
                } // committed at scope exit
            }
        } catch (const aether::Error &e) {
            std::fprintf(stderr, "child: %s\n", e.what());
            rc = 1;
        }
        _exit(rc);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: wrapper SOCKET PREFIX\n");
        return 2;
    }
    const std::string socket = argv[1], prefix = argv[2];
    const std::string topic = prefix + "-pubsub", durable = prefix + "-durable";
    try {
        aether::Client client(socket);
        CHECK(aether::version() == AETHER_VERSION);
        client.create_topic(topic, aether::TopicConfig{}.reliable().max_message(256));
        CHECK(status_of([&] { client.create_topic(topic); }) == AETHER_E_EXISTS);
        client.create_topic(topic, aether::TopicConfig{}, aether::exist_ok);

        // Across processes, through views; the subscriber moves between owners.
        aether::Subscriber moved = client.subscriber(topic);
        aether::Subscriber sub = std::move(moved);
        CHECK(moved.native() == nullptr);
        CHECK(status_of([&] { moved.receive(0ms); }) == AETHER_E_INVALID);
        publish_from_child(socket, topic, 100);
        uint64_t last = 0;
        for (int i = 0; i < 100; i++) {
            auto m = sub.receive(5s);
            CHECK(m.has_value());
            if (!m)
                break;
            CHECK(m->text() == "m" + std::to_string(i));
            CHECK(i == 0 || m->seq() == last + 1);
            CHECK(m->timestamp() <= std::chrono::system_clock::now());
            last = m->seq();
        } // each view released at the end of its iteration
        CHECK(!sub.receive(10ms).has_value());
        CHECK(sub.stats().delivered == 100 && sub.stats().lag == 0);
        CHECK(client.topic_stats(topic).published == 100);
        CHECK(status_of([&] { client.topic_stats(prefix + "-missing"); }) == AETHER_E_NOT_FOUND);

        // Loans: committed short, aborted, aborted by an exception.
        auto pub = client.publisher(topic);
        {
            auto loan = pub.loan(64);
            std::memcpy(loan.bytes().data(), "short", 5);
            loan.commit(5);
            CHECK(!loan.active());
            CHECK(status_of([&] { loan.commit(); }) == AETHER_E_INVALID);
        }
        pub.loan(8).abort();
        try {
            auto loan = pub.loan(8);
            std::memcpy(loan.bytes().data(), "unwound!", 8);
            throw std::runtime_error("an error while writing");
        } catch (const std::runtime_error &) {
        }
        pub.publish(std::string_view("after"));
        {
            auto m = sub.receive(5s);
            CHECK(m && m->text() == "short" && m->size() == 5);
            m->release();
            CHECK(status_of([&] { m->release(); }) == AETHER_E_INVALID);
        }
        // Copies; a message larger than the buffer stays unread.
        std::vector<std::byte> small(2), big(256);
        CHECK(status_of([&] { sub.receive_into(aether::span<std::byte>(small.data(), small.size()), 5s); }) ==
              AETHER_E_TOO_LARGE);
        auto n = sub.receive_into(aether::span<std::byte>(big.data(), big.size()), 5s);
        CHECK(n && *n == 5 && std::memcmp(big.data(), "after", 5) == 0);
        CHECK(sub.lost() == 0);

        // Errors carry the status and the library's message.
        CHECK(status_of([&] { client.publisher(prefix + "-missing"); }) == AETHER_E_NOT_FOUND);
        CHECK(status_of([&] { pub.publish(std::string(300, 'x')); }) == AETHER_E_TOO_LARGE);
        CHECK(status_of([&] { client.create_topic("bad name!"); }) == AETHER_E_INVALID);
        CHECK(status_of([&] { client.create_topic(prefix + "-x", aether::TopicConfig{}.ring_size(5000)); }) ==
              AETHER_E_INVALID);
        CHECK(status_of([] { aether::Client("/nonexistent/dir/aether.sock"); }) != AETHER_OK);
        try {
            client.delete_topic(prefix + "-missing");
            CHECK(!"delete of a missing topic succeeded");
        } catch (const aether::Error &e) {
            CHECK(std::string(e.what()).find("missing") != std::string::npos);
        }
        pub.set_timeout(50ms);
        pub.set_timeout(std::nullopt);
        pub.set_large_laps(AETHER_LARGE_LAPS_MEASURED);
        pub.set_large_laps(AETHER_LARGE_LAPS_WHOLE);
        pub.set_timestamps(false);
        pub.publish(std::string_view("untimed"));
        auto u = sub.receive(5s);
        CHECK(u && u->text() == "untimed" && u->timestamp().time_since_epoch().count() == 0);
        u.reset();
        pub.set_timestamps(true);
        CHECK(sub.fd() >= 0);

        // Moves: the moved-to handle works, the moved-from one says so.
        aether::Publisher pub2;
        pub2 = std::move(pub);
        pub2.publish(std::string_view("moved"));
        CHECK(status_of([&] { pub.publish(std::string_view("x")); }) == AETHER_E_INVALID);
        auto m = sub.receive(5s);
        CHECK(m && m->text() == "moved");
        m.reset();

        // A durable topic: its log from the earliest, and a durable subscription.
        client.create_topic(durable, aether::TopicConfig{}.durable(AETHER_FSYNC_ALWAYS));
        auto dp = client.publisher(durable);
        for (int i = 0; i < 10; i++)
            dp.publish("d" + std::to_string(i));
        {
            auto all = client.subscriber(durable, aether::SubscriberConfig{}.from_earliest());
            for (int i = 0; i < 10; i++) {
                auto d = all.receive(5s);
                CHECK(d && d->seq() == static_cast<uint64_t>(i) && d->text() == "d" + std::to_string(i));
            }
        }
        aether::SubscriberConfig named;
        named.durable("cpp");
        aether::SubscriberConfig copy = named; // the name travels with the copy
        {
            auto ds = client.subscriber(durable, copy);
            for (int i = 0; i < 3; i++)
                CHECK(ds.receive(5s).has_value());
            ds.commit();
        }
        auto ds = client.subscriber(durable, named);
        auto d = ds.receive(5s);
        CHECK(d && d->seq() == 3);
        d.reset();
        CHECK(status_of([&] { sub.commit(); }) == AETHER_E_INVALID);

        client.delete_topic(topic);
        client.delete_topic(durable);
    } catch (const aether::Error &e) {
        std::fprintf(stderr, "wrapper.cpp: unexpected aether::Error %d: %s\n", e.status(), e.what());
        return 1;
    }
    if (failures == 0)
        std::printf("wrapper: all checks passed\n");
    return failures == 0 ? 0 : 1;
}
