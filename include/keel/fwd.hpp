// keel: forward declarations and the common aliases. Needs no backend headers.
#pragma once

// keel needs C++20 (concepts, designated initializers). Meson consumers set
// cpp_std=c++20, pkg-config users pass -std=c++20 (or later) themselves;
// CMake's keel::keel requires cxx_std_20.
#if __cplusplus < 202002L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 202002L)
#error "keel needs C++20 or later: compile with -std=c++20 (pkg-config's keel.pc does not set it)"
#endif

namespace keel {

enum class errc;
enum class backend;
class error;
template <class T>
class result;
class key_range;
class write_batch;

template <class Policy>
class basic_store;
template <class Policy>
class basic_snapshot;
template <class Policy>
class basic_watch;
template <class CursorImpl>
class basic_cursor;
template <class... Policies>
class basic_any_store;

// Backends (policies) and RocksDB tunings.
class MemoryPolicy;
class EtcdPolicy;  // <keel/etcd.hpp>
template <class Tuning>
class RocksPolicy;
struct DefaultTuning;
struct RocksDefaultsTuning;
struct MacOSTuning;
#if defined(__APPLE__)
using NativeTuning = MacOSTuning;
#else
using NativeTuning = DefaultTuning;
#endif

using memory_store = basic_store<MemoryPolicy>;
using rocks_store = basic_store<RocksPolicy<NativeTuning>>;
using any_store = basic_any_store<RocksPolicy<NativeTuning>, MemoryPolicy>;

// <keel/hybrid.hpp>: memory while small, RocksDB when large, one path.
template <class Small = MemoryPolicy, class Large = RocksPolicy<NativeTuning>>
class HybridPolicy;
using hybrid_store = basic_store<HybridPolicy<>>;

}  // namespace keel
