// The etcd gateway client (keel::detail::etcd_transport) against a scripted
// HTTP server on 127.0.0.1: how each failure is classified, and that a write
// is never sent twice (libcurl 7.88 silently re-sends a POST when a reused
// keep-alive connection dies before the answer; keel must not let it).
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <keel/etcd/codec.hpp>
#include <keel/etcd/transport.hpp>

#include "support/refused_port.hpp"

using namespace std::chrono_literals;
using keel::errc;
using keel::detail::call_kind;
using keel::detail::etcd_transport;
using keel::detail::etcd_transport_config;

namespace {

// A one-thread HTTP/1.1 server. For the n-th request it receives (1-based,
// counted over all connections) it calls script(n): the answer to send, or
// "" to close the connection without answering, or "hang" to never answer.
class scripted_server {
 public:
  explicit scripted_server(std::function<std::string(int)> script) : script_(std::move(script)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~scripted_server() {
    stop_ = true;
    thread_.join();
    for (int c : conns_) ::close(c);
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_.load(); }

  static std::string json(int status, const std::string& body) {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }

 private:
  struct conn_state {
    int fd;
    std::string buf;
    bool hung = false;
  };
  void run() {
    std::vector<conn_state> conns;
    while (!stop_) {
      std::vector<pollfd> fds{{fd_, POLLIN, 0}};
      for (auto& c : conns) fds.push_back({c.fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c >= 0) conns.push_back({c, {}});
      }
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        conn_state& c = conns[i - 1];
        char tmp[65536];
        const ssize_t n = ::recv(c.fd, tmp, sizeof tmp, 0);
        if (n <= 0) {
          ::close(c.fd);
          c.fd = -1;
          continue;
        }
        c.buf.append(tmp, std::size_t(n));
        // Whole requests in the buffer: headers, then Content-Length bytes.
        for (;;) {
          const auto end = c.buf.find("\r\n\r\n");
          if (end == std::string::npos) break;
          std::size_t length = 0;
          const auto cl = c.buf.find("Content-Length: ");
          if (cl != std::string::npos && cl < end) length = std::stoul(c.buf.substr(cl + 16));
          if (c.buf.size() < end + 4 + length) break;
          c.buf.erase(0, end + 4 + length);
          const std::string answer = script_(++requests_);
          if (answer == "hang") {
            c.hung = true;
          } else if (answer.empty()) {
            ::close(c.fd);
            c.fd = -1;
            break;
          } else {
            (void)!::send(c.fd, answer.data(), answer.size(), MSG_NOSIGNAL);
          }
        }
      }
      std::erase_if(conns, [&](const conn_state& c) {
        if (c.fd < 0) return true;
        if (c.hung) conns_.push_back(c.fd);  // kept open, never answered (closed at the end)
        return c.hung;
      });
    }
    for (auto& c : conns) ::close(c.fd);
  }

  std::function<std::string(int)> script_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::vector<int> conns_;
  std::thread thread_;
};

etcd_transport_config config_for(const std::string& url) {
  etcd_transport_config c;
  c.endpoints = {url};
  c.connect_timeout = 200ms;
  c.request_timeout = 300ms;
  c.operation_timeout = 1000ms;
  return c;
}

const std::string ok_body = R"({"header":{"revision":"5"}})";

}  // namespace

TEST_SUITE("etcd") {
  TEST_CASE("transport: a write whose kept-alive connection dies is outcome_unknown and sent once") {
    // 1: answered (the connection stays open); 2: the connection is closed
    // without an answer; 3 and later: answered, so a silent re-send would
    // look like a success.
    scripted_server server([](int n) { return n == 2 ? std::string() : scripted_server::json(200, ok_body); });
    etcd_transport t(config_for(server.url()));
    REQUIRE(t.call("kv/put", "{}", call_kind::write, "put"));
    auto second = t.call("kv/put", "{}", call_kind::write, "put");
    REQUIRE_FALSE(second);
    CHECK(second.error() == errc::outcome_unknown);
    CHECK(second.error().message().find("may or may not have been applied") != std::string::npos);
    CHECK(server.requests() == 2);  // never re-sent
    // The next call uses a fresh connection and works.
    REQUIRE(t.call("kv/put", "{}", call_kind::write, "put"));
    CHECK(server.requests() == 3);
  }

  TEST_CASE("transport: a read on a dying connection is retried") {
    scripted_server server([](int n) { return n == 2 ? std::string() : scripted_server::json(200, ok_body); });
    etcd_transport t(config_for(server.url()));
    REQUIRE(t.call("kv/range", "{}", call_kind::read, "get"));
    auto again = t.call("kv/range", "{}", call_kind::read, "get");
    REQUIRE(again);
    CHECK(keel::detail::json_int((*again)["header"], "revision") == 5);
    CHECK(server.requests() == 3);
  }

  TEST_CASE("transport: no answer within the request timeout") {
    scripted_server server([](int) { return std::string("hang"); });
    etcd_transport t(config_for(server.url()));
    auto w = t.call("kv/put", "{}", call_kind::write, "put");
    REQUIRE_FALSE(w);
    CHECK(w.error() == errc::outcome_unknown);
    CHECK(server.requests() == 1);
    auto r = t.call("kv/range", "{}", call_kind::read, "get");
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::unavailable);  // retried until operation_timeout, then "not applied"
    CHECK(server.requests() >= 3);
  }

  TEST_CASE("transport: an endpoint nobody listens on is reported within the connect timeout, by name") {
    // A socket bound to a port but not listening: every connection to the
    // port is refused (as when etcd is not running), and no other process can
    // take the port while the test runs.
    keel::test::refused_port closed;
    const std::string url = "http://" + closed.host_port();
    etcd_transport_config c;
    c.endpoints = {url};
    c.connect_timeout = 300ms;
    c.request_timeout = 1000ms;
    c.operation_timeout = 10000ms;
    etcd_transport t(c);
    for (call_kind kind : {call_kind::read, call_kind::write}) {
      CAPTURE(static_cast<int>(kind));
      const auto start = std::chrono::steady_clock::now();
      auto r = t.call("kv/range", "{}", kind, "get");
      const auto took = std::chrono::steady_clock::now() - start;
      REQUIRE_FALSE(r);
      CHECK(r.error() == errc::unavailable);  // nothing was sent: not applied
      CHECK(r.error().message().find(url) != std::string::npos);
      CHECK(r.error().message().find("connect_timeout") != std::string::npos);
      CHECK(took >= 300ms);  // refused at once, retried until the connect timeout
      CHECK(took < 3000ms);  // not the 10 s of operation_timeout
    }
  }

  // Issue 24 (7): a member that accepts connections but never answers (cut
  // off from the leader) kept every later write too: the endpoint a write
  // timed out on stayed the preferred one. The timed-out write is not sent
  // again; the next call starts on the next endpoint.
  TEST_CASE("transport: after a write with no answer the next call goes to another endpoint") {
    scripted_server silent([](int) { return std::string("hang"); });
    scripted_server healthy([](int) { return scripted_server::json(200, ok_body); });
    auto c = config_for(silent.url());
    c.endpoints.push_back(healthy.url());
    etcd_transport t(c);
    const auto started = std::chrono::steady_clock::now();
    auto w = t.call("kv/put", "{}", call_kind::write, "put");
    REQUIRE_FALSE(w);
    CHECK(w.error() == errc::outcome_unknown);
    CHECK(w.error().message().find(silent.url()) != std::string::npos);
    CHECK(silent.requests() == 1);
    CHECK(healthy.requests() == 0);  // the write that got no answer is never re-sent
    for (int i = 0; i < 5; ++i) {
      auto next = t.call("kv/put", "{}", call_kind::write, "put");
      REQUIRE_MESSAGE(next, next.error().message());
    }
    auto r = t.call("kv/range", "{}", call_kind::read, "get");
    REQUIRE_MESSAGE(r, r.error().message());
    CHECK(silent.requests() == 1);
    CHECK(healthy.requests() == 6);
    // One request timeout lost in all (300 ms), not one per write.
    CHECK(std::chrono::steady_clock::now() - started < 2 * c.request_timeout);
  }

  TEST_CASE("transport: etcd's answers are classified by code and message") {
    auto answer = [](int status, const char* body) {
      return [=](int) { return scripted_server::json(status, body); };
    };
    SUBCASE("no leader: not applied, retried, then unavailable") {
      scripted_server server(answer(503, R"({"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14})"));
      etcd_transport t(config_for(server.url()));
      auto w = t.call("kv/put", "{}", call_kind::write, "put");
      REQUIRE_FALSE(w);
      CHECK(w.error() == errc::unavailable);
      CHECK(w.error().message().find("no leader") != std::string::npos);
      CHECK(server.requests() >= 2);
    }
    SUBCASE("request timed out: the write may have been applied") {
      scripted_server server(
          answer(503, R"({"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14})"));
      etcd_transport t(config_for(server.url()));
      auto w = t.call("kv/put", "{}", call_kind::write, "put");
      REQUIRE_FALSE(w);
      CHECK(w.error() == errc::outcome_unknown);
      CHECK(server.requests() == 1);
    }
    SUBCASE("compacted: snapshot_expired") {
      scripted_server server(answer(
          400, R"({"message":"etcdserver: mvcc: required revision has been compacted","code":11})"));
      etcd_transport t(config_for(server.url()));
      CHECK(t.call("kv/range", "{}", call_kind::read, "get").error() == errc::snapshot_expired);
    }
    SUBCASE("quota: no_space naming NOSPACE") {
      scripted_server server(answer(429, R"({"message":"etcdserver: mvcc: database space exceeded","code":8})"));
      etcd_transport t(config_for(server.url()));
      auto w = t.call("kv/put", "{}", call_kind::write, "put");
      CHECK(w.error() == errc::no_space);
      CHECK(w.error().message().find("NOSPACE") != std::string::npos);
    }
    SUBCASE("not a gateway: plain-text 404") {
      scripted_server server([](int) {
        return std::string("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n\r\n404 page not found\n");
      });
      etcd_transport t(config_for(server.url()));
      auto r = t.call("kv/range", "{}", call_kind::read, "get");
      CHECK(r.error() == errc::invalid_argument);
      CHECK(r.error().message().find("enable-grpc-gateway") != std::string::npos);
    }
  }
}
