// keel::detail: a client for etcd's v3 HTTP/JSON gateway (libcurl +
// nlohmann-json), used by EtcdPolicy (<keel/etcd.hpp>) and by
// keel::diagnose_cluster (etcd/doctor.hpp). Private: names may change.
// docs/cluster.md ("Failover", "Errors", "Transport") describes the
// behaviour it gives; the etcd facts it relies on are stated where they are
// used (checked against etcd 3.4.23 and libcurl 7.88.1).
//
// What it does:
// - one POST per call to <endpoint>/v3/<path>, JSON body in, JSON body out;
// - endpoint rotation: a call starts on the endpoint that answered last and
//   moves to the next one when an endpoint cannot serve it, until the
//   operation deadline; when no attempt connected anywhere by the end of
//   connect_timeout (every endpoint tried: nothing listens), it ends then;
// - error classification (call_kind):
//     read   idempotent (range, status, member list, compaction): any transport
//            failure or server-side timeout is retried on the next endpoint;
//     write  (put, deleterange, txn with writes) retried on the next endpoint
//            ONLY when it is known not to have been applied (connection
//            refused, the request body never handed to the socket, etcd's
//            "no leader" answer); once the body may have reached a member, a
//            timeout or a dropped connection is errc::outcome_unknown and the
//            call returns at once, never re-sending it; the calls after it
//            start on the next endpoint (a member that takes requests but
//            never answers costs one request timeout, not one per call).
// - it never lets libcurl re-send a request on its own: libcurl 7.88 silently
//   re-sends a POST when a reused keep-alive connection dies before the first
//   response byte. The body is supplied through CURLOPT_READFUNCTION with no
//   CURLOPT_SEEKFUNCTION, so libcurl cannot rewind it and fails with
//   CURLE_SEND_FAIL_REWIND instead; and since the read callback records that
//   the body was handed over, any failure after that point is classified as
//   "may have been applied". A handle whose call failed is destroyed, so the
//   next call opens a fresh connection.
// - every request carries "Grpc-Metadata-hasleader: true": a member that has
//   no leader answers 503 "no leader" at once (not applied) instead of
//   waiting etcd's 7 s request timeout; and an empty "Expect:" header (no
//   100-continue round trip for bodies over 1 MiB).
//
// Thread safety: call() may be used from many threads at once. Each thread
// takes an idle CURL easy handle for the endpoint from a pool (a handle is
// used by one thread at a time) and returns it afterwards, which keeps its
// keep-alive connection for the next call. Locking: mutex_ guards idle_ and
// closed_ and is a leaf (held only to take or give back a handle, never
// around a request); preferred_ and seen_revision_ (what last_seq() gives)
// are atomics.
// Errors: every failure is a keel::error (see the classification above);
// nothing throws except std::bad_alloc.
#pragma once

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
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

// How a failed attempt may be retried (see the classification at the top).
enum class call_kind { read, write };

struct etcd_transport_config {
  std::vector<std::string> endpoints;  // "http://127.0.0.1:2379"; no trailing slash
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds request_timeout{2000};    // one attempt on one endpoint
  std::chrono::milliseconds operation_timeout{10000};  // all attempts of one call
};

class etcd_transport {
 public:
  explicit etcd_transport(etcd_transport_config config) : config_(std::move(config)), idle_(config_.endpoints.size()) {
    static const bool initialised = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    (void)initialised;
    headers_ = curl_slist_append(headers_, "Content-Type: application/json");
    headers_ = curl_slist_append(headers_, "Expect:");
    headers_ = curl_slist_append(headers_, "Grpc-Metadata-hasleader: true");
  }
  etcd_transport(const etcd_transport&) = delete;
  etcd_transport& operator=(const etcd_transport&) = delete;
  ~etcd_transport() {
    close();
    curl_slist_free_all(headers_);
  }

  // Frees every idle handle (and its connection). Calls in flight finish;
  // their handles are freed when they return.
  void close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    for (auto& v : idle_) {
      for (CURL* h : v) curl_easy_cleanup(h);
      v.clear();
    }
  }

  const etcd_transport_config& config() const noexcept { return config_; }

  // The highest revision any answer of this transport (or a watch of its
  // store, note_revision) has reported in its header: what last_seq() gives.
  // Only grows; 0 before any answer.
  std::int64_t seen_revision() const noexcept { return seen_revision_.load(std::memory_order_acquire); }
  void note_revision(std::int64_t revision) const noexcept {
    std::int64_t seen = seen_revision_.load(std::memory_order_relaxed);
    while (revision > seen && !seen_revision_.compare_exchange_weak(seen, revision, std::memory_order_acq_rel)) {
    }
  }
  // header.revision of a gateway answer (a JSON string); 0 when absent.
  static std::int64_t header_revision(const nlohmann::json& j) {
    auto h = j.find("header");
    if (h == j.end() || !h->is_object()) return 0;
    auto r = h->find("revision");
    if (r == h->end() || !r->is_string()) return 0;
    std::int64_t v = 0;
    const std::string& s = r->get_ref<const std::string&>();
    for (char c : s) {
      if (c < '0' || c > '9') return 0;
      v = v * 10 + (c - '0');
    }
    return v;
  }

  // POSTs `body` to /v3/<path> and returns the parsed 200 answer, or an
  // error: see the classification at the top of this file. `what` names the
  // operation in messages ("put", "scan", ...).
  result<nlohmann::json> call(std::string_view path, const std::string& body, call_kind kind,
                              std::string_view what) const {
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + config_.operation_timeout;
    const std::size_t n = config_.endpoints.size();
    const std::size_t first = preferred_.load(std::memory_order_relaxed) % n;
    std::vector<std::string> reasons(n);  // why each endpoint could not serve the call (its last answer)
    std::chrono::milliseconds backoff{10};
    // An endpoint that is not running refuses (or never answers) the dial:
    // when no attempt has connected by the end of the connect timeout and
    // every endpoint was tried, the call ends then, not at its deadline.
    const auto dial_deadline = clock::now() + config_.connect_timeout;
    bool connected = false;  // some attempt of this call reached a member
    for (std::size_t attempt = 0;; ++attempt) {
      const std::size_t ep = (first + attempt) % n;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      if (left.count() <= 0) break;
      attempt_result a = attempt_once(ep, path, body, std::min(left, config_.request_timeout));
      if (a.kind == verdict::ok) {
        preferred_.store(ep, std::memory_order_relaxed);
        return std::move(a.json);
      }
      if (a.kind == verdict::definite) return std::move(*a.error);
      if (a.kind == verdict::maybe_applied && kind == call_kind::write) {
        // Not re-sent; but the next call starts on the next endpoint: a member
        // that accepts connections and never answers (cut off from the
        // leader) then costs one request timeout, not one per call. Only if
        // no other call has moved the preference meanwhile.
        std::size_t still = ep;
        preferred_.compare_exchange_strong(still, (ep + 1) % n, std::memory_order_relaxed);
        return keel::error(errc::outcome_unknown,
                           "etcd: " + std::string(what) + " sent to " + config_.endpoints[ep] +
                               " got no answer (" + a.reason +
                               "): it may or may not have been applied; read the keys back before retrying");
      }
      // Not applied (or a read): try the next endpoint.
      reasons[ep] = std::move(a.reason);
      connected = connected || !a.no_connection;
      if (!connected && attempt + 1 >= n && clock::now() >= dial_deadline) return unreachable(what, reasons);
      preferred_.store((ep + 1) % n, std::memory_order_relaxed);
      if ((attempt + 1) % n == 0) {  // every endpoint failed once: back off before the next round
        const auto rest = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
        if (rest.count() <= 0) break;
        std::this_thread::sleep_for(std::min(backoff, rest));
        backoff = std::min(backoff * 2, std::chrono::milliseconds(200));
      }
    }
    std::string why;
    for (std::size_t i = 0; i < n; ++i) {
      if (reasons[i].empty()) continue;
      why += (why.empty() ? "" : "; ") + config_.endpoints[i] + ": " + reasons[i];
    }
    return keel::error(errc::unavailable, "etcd: " + std::string(what) + " could not be served within " +
                                              std::to_string(config_.operation_timeout.count()) +
                                              " ms (etcd_options::operation_timeout) by any endpoint (" + why +
                                              "); it was not applied");
  }

  // How one attempt ended.
  enum class verdict { ok, definite, not_applied, maybe_applied };

 private:
  struct attempt_result {
    verdict kind = verdict::ok;
    nlohmann::json json;
    std::optional<keel::error> error;  // for definite
    std::string reason;                // for not_applied / maybe_applied
    bool no_connection = false;        // the dial failed (refused, no such host, connect timeout): nothing sent
  };

  // No endpoint accepted a connection within the connect timeout.
  keel::error unreachable(std::string_view what, const std::vector<std::string>& reasons) const {
    std::string why;
    for (std::size_t i = 0; i < reasons.size(); ++i)
      why += (i ? "; " : "") + config_.endpoints[i] + ": " + reasons[i];
    return keel::error(errc::unavailable, "etcd: " + std::string(what) + ": no endpoint accepted a connection within " +
                                              std::to_string(config_.connect_timeout.count()) +
                                              " ms (etcd_options::connect_timeout): " + why +
                                              "; it was not applied. Is etcd running there?");
  }

  struct body_reader {
    const std::string* body;
    std::size_t offset = 0;
    bool handed_over = false;  // the callback ran: some of the body may have reached the socket
  };
  static std::size_t read_body(char* buffer, std::size_t size, std::size_t items, void* user) {
    auto* r = static_cast<body_reader*>(user);
    r->handed_over = true;
    const std::size_t n = std::min(size * items, r->body->size() - r->offset);
    std::memcpy(buffer, r->body->data() + r->offset, n);
    r->offset += n;
    return n;
  }
  static std::size_t write_body(char* data, std::size_t size, std::size_t items, void* user) {
    static_cast<std::string*>(user)->append(data, size * items);
    return size * items;
  }

  CURL* acquire(std::size_t ep) const {
    {
      std::lock_guard lock(mutex_);
      if (!idle_[ep].empty()) {
        CURL* h = idle_[ep].back();
        idle_[ep].pop_back();
        return h;
      }
    }
    CURL* h = curl_easy_init();
    if (!h) return nullptr;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, &read_body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &write_body);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    return h;
  }
  void release(std::size_t ep, CURL* h) const {
    {
      std::lock_guard lock(mutex_);
      if (!closed_) {
        idle_[ep].push_back(h);
        return;
      }
    }
    curl_easy_cleanup(h);
  }

  attempt_result attempt_once(std::size_t ep, std::string_view path, const std::string& body,
                              std::chrono::milliseconds timeout) const {
    attempt_result out;
    CURL* h = acquire(ep);
    if (!h) {
      out.kind = verdict::not_applied;
      out.reason = "curl_easy_init failed";
      return out;
    }
    const std::string url = config_.endpoints[ep] + "/v3/" + std::string(path);
    body_reader reader{&body};
    std::string response;
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_READDATA, &reader);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<std::int64_t>(1, timeout.count())));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::max<std::int64_t>(1, std::min(timeout, config_.connect_timeout).count())));
    const CURLcode rc = curl_easy_perform(h);
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
      curl_easy_cleanup(h);  // its connection may be broken: the next call connects afresh
      out.reason = std::string(curl_easy_strerror(rc)) + " (curl " + std::to_string(static_cast<int>(rc)) + ")";
      // Not applied only if the body never left keel. Any failure after the
      // read callback ran (a timeout, a reset, CURLE_SEND_FAIL_REWIND, or
      // even CURLE_COULDNT_CONNECT: libcurl then tried to re-send on a new
      // connection) may follow a copy that reached a member.
      out.kind = reader.handed_over ? verdict::maybe_applied : verdict::not_applied;
      out.no_connection = !reader.handed_over && (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                                                  rc == CURLE_OPERATION_TIMEDOUT);
      if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) {
        out.kind = verdict::definite;
        out.error = keel::error(errc::invalid_argument, "etcd: bad endpoint URL '" + config_.endpoints[ep] +
                                                            "' (expected http://HOST:PORT): " + out.reason);
      }
      return out;
    }
    release(ep, h);
    if (status == 200) {
      out.json = nlohmann::json::parse(response, nullptr, /*allow_exceptions=*/false);
      if (out.json.is_discarded()) {
        out.kind = verdict::definite;
        out.error = keel::error(errc::io_error, "etcd: " + config_.endpoints[ep] +
                                                    " answered 200 with a body that is not JSON");
      } else {
        note_revision(header_revision(out.json));
      }
      return out;
    }
    classify(status, response, config_.endpoints[ep], out);
    return out;
  }

  // Maps a non-200 answer to a verdict. The gateway answers errors as
  // {"error":msg,"message":msg,"code":<gRPC code>} with the HTTP status of
  // that code (3 InvalidArgument and 11 OutOfRange: 400, 8 ResourceExhausted:
  // 429, 14 Unavailable: 503, 4 DeadlineExceeded: 504), and a path it does
  // not serve with 404 or 405 and a plain-text body. Several conditions share
  // one code, so the message decides: code 11 is both "required revision has
  // been compacted" and "is a future revision"; code 8 both "database space
  // exceeded" (NOSPACE) and "too many requests" (apply backlog: back off);
  // a request over --max-request-bytes is 400 "request is too large" or,
  // past gRPC's own cap, 429 "received message larger than max"; 503 "no
  // leader" comes at once (the hasleader header) and was not applied, while
  // 503 "request timed out" and 500 "context deadline exceeded" may have been
  // (docs/cluster.md, "Errors").
  static void classify(long status, const std::string& body, const std::string& endpoint, attempt_result& out) {
    auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    int code = -1;
    std::string msg;
    if (j.is_object()) {
      code = j.value("code", -1);
      msg = j.value("message", j.value("error", std::string()));
    } else {
      msg = body.substr(0, 200);
      while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.pop_back();
    }
    auto has = [&](std::string_view s) { return msg.find(s) != std::string::npos; };
    auto definite = [&](errc c, std::string text) {
      out.kind = verdict::definite;
      out.error = keel::error(c, std::move(text));
    };
    const std::string said = "etcd (" + endpoint + ", HTTP " + std::to_string(status) + "): " + msg;
    out.reason = "HTTP " + std::to_string(status) + " " + msg;
    // A put or txn naming a lease that is gone: 404 with JSON code 5 (NotFound),
    // nothing applied (etcd/leases.hpp sends it again with a new lease).
    if (code == 5 && has("lease not found")) return definite(errc::not_found, said);
    if (status == 404 || status == 405) {
      return definite(errc::invalid_argument,
                      said + ": not an etcd v3 JSON gateway (keel needs etcd 3.4 or later with the gRPC gateway on; "
                             "a --config-file must say enable-grpc-gateway: true)");
    }
    if (status == 401 || status == 403 || code == 7 || code == 16) return definite(errc::permission_denied, said);
    if (code == 11 && has("compacted")) {
      return definite(errc::snapshot_expired,
                      said + ": the revision this view reads was compacted away; take a new snapshot");
    }
    if (code == 11 && has("future revision")) {
      out.kind = verdict::not_applied;  // a member behind the revision: another may serve it
      return;
    }
    if (has("too many operations in txn request")) {
      return definite(errc::invalid_argument,
                      said + ": the request has more operations or compares than etcd's --max-txn-ops (default 128)");
    }
    if (has("request is too large") || has("larger than max")) {
      return definite(errc::invalid_argument,
                      said + ": the request exceeds etcd's --max-request-bytes (default 1.5 MiB)");
    }
    if (has("database space exceeded")) {
      return definite(errc::no_space,
                      said + ": the etcd database reached its quota (--quota-backend-bytes, NOSPACE alarm): compact, "
                             "defragment every member and disarm the alarm (etcdctl alarm disarm)");
    }
    if (has("too many requests") || has("no leader") || has("not capable")) {
      out.kind = verdict::not_applied;
      return;
    }
    if (code == 3 || code == 9 || code == 11 || status == 400) return definite(errc::invalid_argument, said);
    // 503 "request timed out", "leader changed", 500 "context deadline
    // exceeded", 504, anything else: the request reached a member.
    out.kind = verdict::maybe_applied;
  }

  etcd_transport_config config_;
  mutable std::mutex mutex_;
  mutable std::vector<std::vector<CURL*>> idle_;  // idle handles per endpoint
  bool closed_ = false;
  curl_slist* headers_ = nullptr;
  mutable std::atomic<std::size_t> preferred_{0};
  mutable std::atomic<std::int64_t> seen_revision_{0};
};

}  // namespace keel::detail
