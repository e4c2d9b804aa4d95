// tests/support/refused_port.hpp - a loopback port where nobody listens.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

namespace keel::test {

// A TCP socket bound to 127.0.0.1 on a free port and never listening: every
// connection to "127.0.0.1:PORT" is refused (as when a server is not
// running), and no other process can take the port while this object lives.
// Throws std::runtime_error if the socket cannot be bound. Non-copyable.
class refused_port {
public:
    refused_port() {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
            if (fd_ >= 0) ::close(fd_);
            throw std::runtime_error("refused_port: cannot bind a socket on 127.0.0.1");
        }
        host_port_ = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    }
    refused_port(const refused_port&) = delete;
    refused_port& operator=(const refused_port&) = delete;
    ~refused_port() { ::close(fd_); }

    // "127.0.0.1:PORT".
    const std::string& host_port() const noexcept { return host_port_; }

private:
    int fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    std::string host_port_;
};

}  // namespace keel::test
