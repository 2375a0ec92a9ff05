// consumer.cpp — publishes one message to TOPIC and receives it, through
// aether.hpp found with find_package(aether). Usage: consumer SOCKET TOPIC
#include <aether.hpp>

#include <chrono>
#include <iostream>

int main(int argc, char **argv) {
    if (argc != 3) {
        std::cerr << "usage: consumer SOCKET TOPIC\n";
        return 2;
    }
    try {
        aether::Client client{std::string(argv[1])};
        client.create_topic(argv[2], aether::TopicConfig{}.reliable(), aether::exist_ok);
        auto sub = client.subscriber(argv[2]);
        auto pub = client.publisher(argv[2]);
        pub.publish("hello from CMake");
        auto msg = sub.receive(std::chrono::seconds(5));
        if (!msg) {
            std::cerr << "consumer: nothing received\n";
            return 1;
        }
        std::cout << "got " << msg->text() << " (libaether " << aether::version() << ")\n";
        msg.reset();
        client.delete_topic(argv[2]);
    } catch (const aether::Error &e) {
        std::cerr << "consumer: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
