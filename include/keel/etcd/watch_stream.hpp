// keel::detail: the connection under one etcd watch (etcd/watch.hpp): a
// thread that keeps one streaming POST /v3/watch open through the gateway and
// hands each JSON line to its owner. Private: names may change.
//
// The gateway (grpc-gateway 1.6.4 in etcd 3.4.23) answers a POST /v3/watch
// whose body is one {"create_request":{...}} with HTTP 200 and a stream of
// newline-terminated JSON objects: {"result":{"header":..,"created":true}},
// then {"result":{"header":..,"events":[..]}} as changes commit, or
// {"result":{..,"canceled":true,"compact_revision":"C"}}; a failure of the
// gRPC stream (e.g. the member lost its leader) is one {"error":{..}} line,
// then the end of the response. Checked against etcd 3.4.23 with curl.
//
// What it does:
// - one CURL easy handle per connection and one CURLM (multi) per stream,
//   driven by its own thread with curl_multi_poll; stop() wakes the thread
//   with curl_multi_wakeup, so it ends within a poll turn, and joins it;
// - every request carries "Grpc-Metadata-hasleader: true": a member without
//   a leader refuses the stream, or ends it when it loses its leader, so the
//   watch moves to a member that has one;
// - when a connection fails, ends, or the owner asks (reconnect), the next
//   one goes to the next endpoint with a body the owner builds then (its
//   position); a connection that never got a result line counts as a
//   failure: after every endpoint failed in a row it waits (10 ms doubling to
//   200 ms, woken by stop()); after operation_timeout without any connection
//   the owner is told (on_trouble), and told again when one connects;
// - flow control: when on_message answers pause, the thread stops reading
//   (libcurl's CURL_WRITEFUNC_PAUSE: the server's stream waits, etcd keeps
//   the history) until drain() answers go_on; the reader wakes it (wake()).
//
// Thread safety: start() once; stop(), wake() from any thread. The
// callbacks run on the stream's thread only, one at a time.
#pragma once

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../error.hpp"

namespace keel::detail {

struct etcd_watch_stream_config {
  std::vector<std::string> endpoints;  // "http://HOST:PORT", no trailing slash
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds operation_timeout{10000};  // without any connection this long: on_trouble
};

class etcd_watch_stream {
 public:
  // What the owner says after a line (on_message) or a drain.
  enum class verdict {
    go_on,      // keep reading
    pause,      // stop reading until drain() says go_on
    reconnect,  // end this connection, open the next one
    stop,       // end the stream (the owner has recorded why)
  };
  struct callbacks {
    std::function<std::string()> request;                      // the body of the next connection
    std::function<verdict(const nlohmann::json&)> on_message;  // one {"result":..} line
    std::function<verdict()> drain;                            // while paused: may reading go on?
    std::function<void(std::optional<keel::error>)> on_trouble;  // unavailable / cleared (nullopt)
  };

  etcd_watch_stream() = default;
  etcd_watch_stream(const etcd_watch_stream&) = delete;
  etcd_watch_stream& operator=(const etcd_watch_stream&) = delete;
  ~etcd_watch_stream() {
    stop();
    if (multi_) curl_multi_cleanup(multi_);
    if (headers_) curl_slist_free_all(headers_);
  }

  // Starts the thread. Errors: io_error when libcurl cannot make a handle.
  result<void> start(etcd_watch_stream_config config, callbacks cb) {
    config_ = std::move(config);
    cb_ = std::move(cb);
    multi_ = curl_multi_init();
    if (!multi_) return keel::error(errc::io_error, "etcd: watch: curl_multi_init failed");
    headers_ = curl_slist_append(headers_, "Content-Type: application/json");
    headers_ = curl_slist_append(headers_, "Grpc-Metadata-hasleader: true");
    thread_ = std::thread([this] { run(); });
    return {};
  }

  // Ends the stream and joins its thread (idempotent, from any thread but
  // the stream's own).
  void stop() {
    stopping_.store(true, std::memory_order_release);
    wake();
    std::lock_guard lock(join_mutex_);
    if (thread_.joinable()) thread_.join();
  }
  // Interrupts the thread's wait (to drain, or to stop).
  void wake() {
    if (multi_) curl_multi_wakeup(multi_);
  }

 private:
  using clock = std::chrono::steady_clock;

  bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }

  // One connection's state (the write callback's user data).
  struct connection {
    etcd_watch_stream* self = nullptr;
    CURL* handle = nullptr;
    std::string lines;         // bytes received, not yet taken apart
    long status = -1;          // HTTP status, read at the first byte
    std::string error_body;    // a non-200 answer's body
    bool connected = false;    // a result line came
    std::optional<verdict> end;  // reconnect or stop, asked by a line
    std::string reason;        // why it ended
  };

  static std::size_t on_bytes(char* data, std::size_t size, std::size_t items, void* user) {
    auto* c = static_cast<connection*>(user);
    const std::size_t n = size * items;
    if (c->status < 0) curl_easy_getinfo(c->handle, CURLINFO_RESPONSE_CODE, &c->status);
    if (c->status != 200) {
      if (c->error_body.size() < 400) c->error_body.append(data, std::min<std::size_t>(n, 400));
      return n;
    }
    if (c->self->paused_) return CURL_WRITEFUNC_PAUSE;  // not taken: libcurl keeps it for the unpause
    c->lines.append(data, n);
    c->self->take_lines(*c);
    return c->end ? 0 : n;  // 0: libcurl ends the transfer (CURLE_WRITE_ERROR)
  }

  // Hands every complete line to the owner, until a pause or an end.
  void take_lines(connection& c) {
    std::size_t at = 0;
    while (!paused_ && !c.end) {
      const std::size_t nl = c.lines.find('\n', at);
      if (nl == std::string::npos) break;
      const std::string_view line(c.lines.data() + at, nl - at);
      at = nl + 1;
      if (line.find_first_not_of(" \r\t") == std::string_view::npos) continue;
      auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) {
        c.end = verdict::reconnect;
        c.reason = "the gateway sent a line that is not JSON";
        break;
      }
      if (auto e = j.find("error"); e != j.end()) {
        c.end = verdict::reconnect;
        c.reason = e->is_object() ? e->value("message", std::string("stream error")) : std::string("stream error");
        break;
      }
      auto r = j.find("result");
      if (r == j.end() || !r->is_object()) continue;
      if (!c.connected) {
        c.connected = true;
        connected_now();
      }
      switch (cb_.on_message(*r)) {
        case verdict::go_on: break;
        case verdict::pause: paused_ = true; break;
        case verdict::reconnect:
          c.end = verdict::reconnect;
          c.reason = "the watch was canceled";
          break;
        case verdict::stop: c.end = verdict::stop; break;
      }
    }
    c.lines.erase(0, at);
  }

  void connected_now() {
    failures_ = 0;
    backoff_ = std::chrono::milliseconds(10);
    trouble_since_.reset();
    if (told_trouble_) {
      told_trouble_ = false;
      cb_.on_trouble(std::nullopt);
    }
  }

  // Runs one connection to endpoint `ep` until it ends; the verdict.
  verdict run_connection(std::size_t ep, connection& c) {
    const std::string url = config_.endpoints[ep] + "/v3/watch";
    const std::string body = cb_.request();
    c.self = this;
    c.handle = curl_easy_init();
    if (!c.handle) {
      c.reason = "curl_easy_init failed";
      return verdict::reconnect;
    }
    CURL* h = c.handle;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &on_bytes);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::max<std::int64_t>(1, config_.connect_timeout.count())));
    curl_multi_add_handle(multi_, h);
    verdict out = verdict::reconnect;
    for (;;) {
      if (stopping()) {
        out = verdict::stop;
        break;
      }
      if (paused_) {
        const verdict d = cb_.drain();
        if (d == verdict::stop) {
          out = verdict::stop;
          break;
        }
        if (d == verdict::go_on) {
          paused_ = false;
          take_lines(c);  // what was received before the pause
          if (!paused_ && !c.end) curl_easy_pause(h, CURLPAUSE_CONT);  // may call on_bytes at once
        }
      }
      if (c.end) {
        out = *c.end;
        break;
      }
      int running = 0;
      curl_multi_perform(multi_, &running);
      if (c.end) {
        out = *c.end;
        break;
      }
      int queued = 0;
      bool done = false;
      while (CURLMsg* m = curl_multi_info_read(multi_, &queued)) {
        if (m->msg != CURLMSG_DONE) continue;
        done = true;
        if (c.status > 0 && c.status != 200) {
          c.reason = "HTTP " + std::to_string(c.status) + " " + c.error_body;
        } else if (m->data.result != CURLE_OK) {
          c.reason = curl_easy_strerror(m->data.result);
        } else {
          c.reason = "the stream ended";
        }
      }
      if (done) break;
      curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
    }
    curl_multi_remove_handle(multi_, h);
    curl_easy_cleanup(h);
    c.handle = nullptr;
    return out;
  }

  void run() {
    const std::size_t n = config_.endpoints.size();
    std::vector<std::string> reasons(n);
    std::size_t ep = 0;
    while (!stopping()) {
      connection c;
      paused_ = false;  // a new connection starts reading (the owner's held changes stay held)
      const verdict v = run_connection(ep, c);
      if (v == verdict::stop || stopping()) break;
      reasons[ep] = c.reason;
      ep = (ep + 1) % n;
      if (c.connected) continue;  // it worked, then broke: the next endpoint at once
      if (!trouble_since_) trouble_since_ = clock::now();
      if (!told_trouble_ && clock::now() - *trouble_since_ >= config_.operation_timeout) {
        told_trouble_ = true;
        std::string why;
        for (std::size_t i = 0; i < n; ++i) {
          if (!reasons[i].empty()) why += (why.empty() ? "" : "; ") + config_.endpoints[i] + ": " + reasons[i];
        }
        cb_.on_trouble(keel::error(errc::unavailable, "etcd: watch: no endpoint served the watch for " +
                                                          std::to_string(config_.operation_timeout.count()) +
                                                          " ms (etcd_options::operation_timeout); still trying (" +
                                                          why + ")"));
      }
      if (++failures_ % n == 0) {  // every endpoint failed in a row: wait before the next round
        const auto until = clock::now() + backoff_;
        while (!stopping() && clock::now() < until) {
          const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now());
          curl_multi_poll(multi_, nullptr, 0, static_cast<int>(std::max<std::int64_t>(1, left.count())), nullptr);
        }
        backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds(200));
      }
    }
  }

  etcd_watch_stream_config config_;
  callbacks cb_;
  CURLM* multi_ = nullptr;
  curl_slist* headers_ = nullptr;
  std::atomic<bool> stopping_{false};
  std::mutex join_mutex_;  // serialises joiners (the watch's destructor, the store's close)
  // The stream thread's own state.
  bool paused_ = false;
  std::size_t failures_ = 0;  // connections in a row that never connected
  std::chrono::milliseconds backoff_{10};
  std::optional<clock::time_point> trouble_since_;
  bool told_trouble_ = false;
  std::thread thread_;  // last: started after everything it uses
};

}  // namespace keel::detail
