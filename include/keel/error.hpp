// keel: error codes, the error type and result<T>.
//
// Every keel operation that can fail returns result<T>: either a value or a
// keel::error. Nothing in keel's API throws for an expected failure (a missing
// file, a held lock, a closed store); exceptions escape only for programming
// errors inside result<T> (value() on an error) and for std::bad_alloc.
#pragma once

#include <cassert>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace keel {

// What went wrong, coarse enough to decide on (retry? fall back? report?).
enum class errc {
  invalid_argument,             // bad input or a path that cannot be a store (e.g. a regular file)
  not_found,                    // the store path does not exist (and create_if_missing is false)
  io_error,                     // the OS or RocksDB reported an I/O failure
  corruption,                   // stored data failed a consistency check; never fall back over it
  no_space,                     // the disk is full
  permission_denied,            // the process may not read or write the path
  lock_held_by_other_process,   // another process has the store open
  already_open_in_process,      // this process has the store open already (any spelling of the path)
  locks_unsupported,            // the filesystem cannot take the lock (NFS without lockd, SMB, ...)
  closed,                       // the store, cursor or snapshot was closed
  not_supported,                // the backend cannot do this
  conflict,                     // a transaction's reads changed before it committed; nothing was written: run it again
  read_only,                    // a write on a store opened read-only
  unavailable,                  // a cluster backend cannot be reached or has no quorum; the operation was NOT applied
  outcome_unknown,              // a cluster write timed out after it was sent: it may or may not have been applied
  snapshot_expired,             // a read at a version the backend no longer keeps (etcd compaction)
};

// The name of the code, e.g. "lock_held_by_other_process".
constexpr std::string_view to_string(errc code) noexcept {
  switch (code) {
    case errc::invalid_argument: return "invalid_argument";
    case errc::not_found: return "not_found";
    case errc::io_error: return "io_error";
    case errc::corruption: return "corruption";
    case errc::no_space: return "no_space";
    case errc::permission_denied: return "permission_denied";
    case errc::lock_held_by_other_process: return "lock_held_by_other_process";
    case errc::already_open_in_process: return "already_open_in_process";
    case errc::locks_unsupported: return "locks_unsupported";
    case errc::closed: return "closed";
    case errc::not_supported: return "not_supported";
    case errc::conflict: return "conflict";
    case errc::read_only: return "read_only";
    case errc::unavailable: return "unavailable";
    case errc::outcome_unknown: return "outcome_unknown";
    case errc::snapshot_expired: return "snapshot_expired";
  }
  return "unknown";
}

// An error: a code to branch on and a message for people. The message is
// actionable: it names the path, the cause, the holder's PID where known and
// what to do next.
class error {
 public:
  error(errc code, std::string message) : code_(code), message_(std::move(message)) {}

  errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

  friend bool operator==(const error& e, errc code) noexcept { return e.code_ == code; }

 private:
  errc code_;
  std::string message_;
};

// Thrown by result<T>::value() when the result holds an error.
class bad_result_access : public std::exception {
 public:
  explicit bad_result_access(keel::error e) : error_(std::move(e)), what_(error_.message()) {}
  const char* what() const noexcept override { return what_.c_str(); }
  const keel::error& error() const noexcept { return error_; }

 private:
  keel::error error_;
  std::string what_;
};

// Tag for building a failed result: `return keel::fail(errc::closed, "...")`.
struct failure {
  keel::error error;
};
inline failure fail(errc code, std::string message) { return failure{error(code, std::move(message))}; }
inline failure fail(error e) { return failure{std::move(e)}; }

// std::expected-shaped: holds a T or an error. Contextual bool is has_value().
// operator* and operator-> require has_value() (asserted); value() throws
// bad_result_access instead.
template <class T>
class [[nodiscard]] result {
 public:
  using value_type = T;

  template <class U = T>
    requires std::is_constructible_v<T, U&&> && (!std::is_same_v<std::remove_cvref_t<U>, result>) &&
             (!std::is_same_v<std::remove_cvref_t<U>, failure>)
  result(U&& v) : state_(std::in_place_index<0>, std::forward<U>(v)) {}
  result(failure f) : state_(std::in_place_index<1>, std::move(f.error)) {}
  result(keel::error e) : state_(std::in_place_index<1>, std::move(e)) {}

  bool has_value() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { check(); return std::get<0>(state_); }
  const T& value() const& { check(); return std::get<0>(state_); }
  T&& value() && { check(); return std::get<0>(std::move(state_)); }

  T& operator*() & noexcept { assert(has_value()); return *std::get_if<0>(&state_); }
  const T& operator*() const& noexcept { assert(has_value()); return *std::get_if<0>(&state_); }
  T&& operator*() && noexcept { assert(has_value()); return std::move(*std::get_if<0>(&state_)); }
  T* operator->() noexcept { assert(has_value()); return std::get_if<0>(&state_); }
  const T* operator->() const noexcept { assert(has_value()); return std::get_if<0>(&state_); }

  // Precondition: !has_value().
  const keel::error& error() const& noexcept { assert(!has_value()); return *std::get_if<1>(&state_); }
  keel::error&& error() && noexcept { assert(!has_value()); return std::move(*std::get_if<1>(&state_)); }

 private:
  void check() const {
    if (!has_value()) throw bad_result_access(*std::get_if<1>(&state_));
  }
  std::variant<T, keel::error> state_;
};

template <>
class [[nodiscard]] result<void> {
 public:
  using value_type = void;

  result() noexcept = default;
  result(failure f) : error_(std::move(f.error)) {}
  result(keel::error e) : error_(std::move(e)) {}

  bool has_value() const noexcept { return !error_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const {
    if (error_) throw bad_result_access(*error_);
  }
  void operator*() const noexcept { assert(has_value()); }

  // Precondition: !has_value().
  const keel::error& error() const& noexcept { assert(error_); return *error_; }
  keel::error&& error() && noexcept { assert(error_); return std::move(*error_); }

 private:
  std::optional<keel::error> error_;
};

}  // namespace keel
