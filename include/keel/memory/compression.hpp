// keel/memory/compression.hpp - value compression of the memory backend
// (memory_options::compression, docs/compression.md): the codecs (zstd or lz4
// with a dictionary) and value_compression, a store's codec table,
// dictionary training and background compression pass.
//
// Which libraries exist is decided at build time by KEEL_HAVE_ZSTD and
// KEEL_HAVE_LZ4 (keel's Meson dependency and keel.pc define them when the
// library was found), not by __has_include: a header installed without the
// library being linked would turn into undefined references. Without them
// this header needs no library and compression_missing() names what is
// missing.
//
// Frames are as small as the libraries allow: zstd without its magic number,
// dictionary ID, content size or checksum (the caller keeps the value's
// length), lz4 as a raw block. A value is kept compressed only when that
// saves at least 1/8 of its bytes (worth_keeping). Compression runs off the
// write path, so it favours size: zstd level 3, lz4's HC compressor at level
// 4 (a third fewer bytes than lz4's fast mode on JSON records with a
// dictionary, same decompression speed; about 12 us per value, mostly the
// copy of the 256 KiB stream with the dictionary loaded, since the shared
// library lacks LZ4_attach_HC_dictionary).
//
// Thread safety: a value_codec is immutable once built; decompress() may be
// called from any number of threads at once (zstd: one ZSTD_DCtx per thread,
// created on first use, freed at thread exit). compress() needs a
// compress_context, which one thread at a time may use.
//
// value_compression (below the codecs) states its own contracts: values
// are written raw and compressed later, off the write path, by a pass that
// republishes them in new versions (versions.hpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "../compression.hpp"
#include "../detail/background_worker.hpp"
#include "thread_exit.hpp"
#include "../error.hpp"
#include "../write_batch.hpp"
#include "btree.hpp"
#include "keyspaces.hpp"
#include "versions.hpp"

#if KEEL_HAVE_ZSTD
#include <zdict.h>
#include <zstd.h>
#endif
#if KEEL_HAVE_LZ4
#include <lz4.h>
#include <lz4hc.h>
#endif

namespace keel::detail {

// The error open() gives when `c` was not built in, or nullopt.
inline std::optional<keel::error> compression_missing(compression c) {
  switch (c) {
    case compression::none: return std::nullopt;
    case compression::zstd:
#if KEEL_HAVE_ZSTD
      return std::nullopt;
#else
      return keel::error(errc::not_supported,
                         "memory_options::compression = zstd: keel was built without libzstd (KEEL_HAVE_ZSTD is "
                         "not defined; install libzstd-dev and rebuild, or link keel's dependency)");
#endif
    case compression::lz4:
#if KEEL_HAVE_LZ4
      return std::nullopt;
#else
      return keel::error(errc::not_supported,
                         "memory_options::compression = lz4: keel was built without liblz4 (KEEL_HAVE_LZ4 is "
                         "not defined; install liblz4-dev and rebuild, or link keel's dependency)");
#endif
  }
  return keel::error(errc::invalid_argument, "memory_options::compression: not a compression");
}

// Keep the compressed form only when it saves at least 1/8 of the bytes.
constexpr bool worth_keeping(std::size_t compressed, std::size_t raw) noexcept { return compressed * 8 <= raw * 7; }

// A dictionary for `c` (at most `capacity` bytes) from sample values; empty
// when the samples are too few or too alike to train one. zstd trains with
// ZDICT_trainFromBuffer; so does lz4 when zstd is built in, else its
// dictionary is the samples' last `capacity` bytes.
inline std::string train_dictionary(compression c, const std::vector<std::string_view>& samples, std::size_t capacity) {
  std::string joined;
  std::vector<std::size_t> sizes;
  for (std::string_view s : samples) {
    if (s.empty()) continue;
    joined.append(s);
    sizes.push_back(s.size());
  }
  if (joined.empty() || c == compression::none) return {};
#if KEEL_HAVE_ZSTD
  std::string dict(capacity, '\0');
  const std::size_t n =
      ZDICT_trainFromBuffer(dict.data(), dict.size(), joined.data(), sizes.data(), static_cast<unsigned>(sizes.size()));
  if (ZDICT_isError(n)) return {};
  dict.resize(n);
  return dict;
#else
  if (joined.size() > capacity) joined.erase(0, joined.size() - capacity);
  return joined;
#endif
}

// Per-thread scratch for compress(): a zstd compression context and an lz4
// stream. Not thread-safe; reuse it across calls.
class compress_context {
 public:
  compress_context() = default;
  compress_context(const compress_context&) = delete;
  compress_context& operator=(const compress_context&) = delete;
  ~compress_context() {
#if KEEL_HAVE_ZSTD
    ZSTD_freeCCtx(zstd_);
#endif
#if KEEL_HAVE_LZ4
    if (lz4_) LZ4_freeStreamHC(lz4_);
#endif
  }

 private:
  friend class value_codec;
#if KEEL_HAVE_ZSTD
  ZSTD_CCtx* zstd() {
    if (!zstd_) {
      zstd_ = ZSTD_createCCtx();
      if (!zstd_) throw std::bad_alloc();
      // Smallest frames: no magic number (ZSTD_c_format = magicless, an
      // experimental parameter the shared library accepts by number), no
      // dictionary ID, content size or checksum.
      ZSTD_CCtx_setParameter(zstd_, ZSTD_c_experimentalParam2, 1);
      ZSTD_CCtx_setParameter(zstd_, ZSTD_c_dictIDFlag, 0);
      ZSTD_CCtx_setParameter(zstd_, ZSTD_c_contentSizeFlag, 0);
      ZSTD_CCtx_setParameter(zstd_, ZSTD_c_checksumFlag, 0);
    }
    return zstd_;
  }
  ZSTD_CCtx* zstd_ = nullptr;
#endif
#if KEEL_HAVE_LZ4
  LZ4_streamHC_t* lz4() {
    if (!lz4_) lz4_ = LZ4_createStreamHC();
    if (!lz4_) throw std::bad_alloc();
    return lz4_;
  }
  LZ4_streamHC_t* lz4_ = nullptr;
#endif
  std::string buffer_;
};

// One compression with one (possibly empty) dictionary.
class value_codec {
 public:
  // Levels for values compressed in the background.
  static constexpr int zstd_level = 3;
  static constexpr int lz4hc_level = 4;

  // Throws std::bad_alloc when the library cannot build its dictionary
  // tables. Precondition: compression_missing(kind) is nullopt, kind != none.
  value_codec(compression kind, std::string dictionary) : kind_(kind), dict_(std::move(dictionary)) {
#if KEEL_HAVE_ZSTD
    if (kind_ == compression::zstd && !dict_.empty()) {
      cdict_ = ZSTD_createCDict(dict_.data(), dict_.size(), zstd_level);
      ddict_ = ZSTD_createDDict(dict_.data(), dict_.size());
      if (!cdict_ || !ddict_) {
        free_zstd();
        throw std::bad_alloc();
      }
    }
#endif
#if KEEL_HAVE_LZ4
    if (kind_ == compression::lz4) {
      // lz4 looks back at most 64 KiB: the dictionary's end is what counts.
      if (dict_.size() > 65536) dict_.erase(0, dict_.size() - 65536);
      lz4_base_ = LZ4_createStreamHC();
      if (!lz4_base_) throw std::bad_alloc();
      LZ4_resetStreamHC_fast(lz4_base_, lz4hc_level);
      if (!dict_.empty()) LZ4_loadDictHC(lz4_base_, dict_.data(), static_cast<int>(dict_.size()));
    }
#endif
  }
  value_codec(const value_codec&) = delete;
  value_codec& operator=(const value_codec&) = delete;
  ~value_codec() {
#if KEEL_HAVE_ZSTD
    free_zstd();
#endif
#if KEEL_HAVE_LZ4
    if (lz4_base_) LZ4_freeStreamHC(lz4_base_);
#endif
  }

  compression kind() const noexcept { return kind_; }
  const std::string& dictionary() const noexcept { return dict_; }

  // The compressed form of `raw`, when worth_keeping; else nullopt. The view
  // points into ctx and is valid until its next use.
  std::optional<std::string_view> compress(std::string_view raw, compress_context& ctx) const {
    if (raw.empty()) return std::nullopt;
    [[maybe_unused]] std::string& out = ctx.buffer_;
    switch (kind_) {
      case compression::none: return std::nullopt;
      case compression::zstd: {
#if KEEL_HAVE_ZSTD
        out.resize(ZSTD_compressBound(raw.size()));
        ZSTD_CCtx* c = ctx.zstd();
        if (cdict_) {
          ZSTD_CCtx_refCDict(c, cdict_);
        } else {
          ZSTD_CCtx_refCDict(c, nullptr);
          ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, zstd_level);
        }
        const std::size_t n = ZSTD_compress2(c, out.data(), out.size(), raw.data(), raw.size());
        if (ZSTD_isError(n) || !worth_keeping(n, raw.size())) return std::nullopt;
        return std::string_view(out.data(), n);
#else
        return std::nullopt;
#endif
      }
      case compression::lz4: {
#if KEEL_HAVE_LZ4
        if (raw.size() > static_cast<std::size_t>(LZ4_MAX_INPUT_SIZE)) return std::nullopt;
        out.resize(static_cast<std::size_t>(LZ4_compressBound(static_cast<int>(raw.size()))));
        // A copy of the stream with the dictionary loaded: cheaper than
        // LZ4_loadDictHC per value (LZ4_attach_HC_dictionary is static-only).
        LZ4_streamHC_t* s = ctx.lz4();
        std::memcpy(static_cast<void*>(s), lz4_base_, sizeof(LZ4_streamHC_t));
        const int n = LZ4_compress_HC_continue(s, raw.data(), out.data(), static_cast<int>(raw.size()),
                                               static_cast<int>(out.size()));
        if (n <= 0 || !worth_keeping(static_cast<std::size_t>(n), raw.size())) return std::nullopt;
        return std::string_view(out.data(), static_cast<std::size_t>(n));
#else
        return std::nullopt;
#endif
      }
    }
    return std::nullopt;
  }

  // Decompresses `stored` into out[0, raw_size). False when it does not
  // decompress to exactly raw_size bytes (damaged).
  bool decompress([[maybe_unused]] std::string_view stored, [[maybe_unused]] char* out,
                  [[maybe_unused]] std::size_t raw_size) const noexcept {
    switch (kind_) {
      case compression::none: return false;
      case compression::zstd: {
#if KEEL_HAVE_ZSTD
        ZSTD_DCtx* d = my_dctx();
        if (!d) return false;
        const std::size_t n = ddict_ ? ZSTD_decompress_usingDDict(d, out, raw_size, stored.data(), stored.size(), ddict_)
                                     : ZSTD_decompressDCtx(d, out, raw_size, stored.data(), stored.size());
        return !ZSTD_isError(n) && n == raw_size;
#else
        return false;
#endif
      }
      case compression::lz4: {
#if KEEL_HAVE_LZ4
        const int n = LZ4_decompress_safe_usingDict(stored.data(), out, static_cast<int>(stored.size()),
                                                    static_cast<int>(raw_size), dict_.data(),
                                                    static_cast<int>(dict_.size()));
        return n >= 0 && static_cast<std::size_t>(n) == raw_size;
#else
        return false;
#endif
      }
    }
    return false;
  }

 private:
#if KEEL_HAVE_ZSTD
  void free_zstd() noexcept {
    ZSTD_freeCDict(cdict_);
    ZSTD_freeDDict(ddict_);
    cdict_ = nullptr;
    ddict_ = nullptr;
  }
  // The calling thread's decompression context (magicless frames), freed
  // when the thread exits; nullptr if it cannot be allocated.
  static void free_dctx(void* d) noexcept { ZSTD_freeDCtx(static_cast<ZSTD_DCtx*>(d)); }
  using my_dctx_ptr = thread_exit_pointer<&value_codec::free_dctx>;
  static ZSTD_DCtx* my_dctx() noexcept {
    void* mine = my_dctx_ptr::get();
    if (!mine) {
      ZSTD_DCtx* d = ZSTD_createDCtx();
      if (!d) return nullptr;
      ZSTD_DCtx_setParameter(d, ZSTD_d_experimentalParam1, 1);  // ZSTD_d_format = magicless
      my_dctx_ptr::set(d);
      mine = d;
    }
    return static_cast<ZSTD_DCtx*>(mine);
  }
  ZSTD_CDict* cdict_ = nullptr;
  ZSTD_DDict* ddict_ = nullptr;
#endif
#if KEEL_HAVE_LZ4
  LZ4_streamHC_t* lz4_base_ = nullptr;
#endif
  compression kind_;
  std::string dict_;
};

// ---------------------------------------------------------------------------
// value_compression: the compression state of one memory store.
//
// Codec slots: entries name theirs (pb_entry::codec(), 1-127); slot 0 is
// unused. A slot is filled (release) before any entry naming it is
// published and is never changed or freed while the store exists, so a
// reader of any version finds its entries' codecs.
//
// Writes store values raw and count their bytes (note_raw_bytes, with the
// writers' mutex held); once about 1 MiB (or 1/8 of the values held, if
// more) is written since the last pass, the background thread runs pass():
// it trains a dictionary if due and republishes the raw values compressed,
// chunk_entries per new version. compact() runs a pass at once.
//
// Thread safety: decode() from any thread, lock-free; note_raw_bytes() and
// note_batch() with the writers' mutex (memory_versions::writers()) held;
// pass() and dictionaries() take mutex_ (taken before the writers' mutex);
// enable(), install_saved_dictionary() and count_loaded_bytes() only while
// the store is being opened, before it is shared; start() and stop() from
// the store's open and close. Errors: decode() returns false when a value
// does not decompress (memory damage only); a pass that cannot allocate
// leaves the values raw.
// ---------------------------------------------------------------------------
class value_compression {
 public:
  using tree = persistent_btree;

  static constexpr std::size_t max_codecs = 128;  // slots 1-127 (pb_entry::codec())
  static constexpr std::size_t dictionary_bytes = std::size_t{64} << 10;
  static constexpr std::size_t sample_bytes = std::size_t{4} << 20;         // values sampled to train
  static constexpr std::size_t sample_value_limit = std::size_t{16} << 10;  // larger values are not samples
  static constexpr std::size_t train_min_bytes = std::size_t{64} << 10;  // sampleable bytes before a first dictionary
  static constexpr std::size_t pass_min_bytes = std::size_t{1} << 20;    // raw bytes written that start a pass
  static constexpr std::size_t chunk_entries = 4096;                     // entries republished per version

  // `versions`: the store's versions, which a pass reads and republishes;
  // it outlives this object.
  explicit value_compression(memory_versions& versions) noexcept : versions_(versions) {}
  value_compression(const value_compression&) = delete;
  value_compression& operator=(const value_compression&) = delete;
  ~value_compression() {
    worker_.stop();
    for (std::size_t i = 0; codecs_ && i < max_codecs; ++i) delete codecs_[i].load();
  }

  // At open: compress with `kind` (none: all unused). Precondition:
  // compression_missing(kind) is nullopt.
  void enable(keel::compression kind) {
    kind_ = kind;
    if (kind_ != compression::none) codecs_ = std::make_unique<std::atomic<const value_codec*>[]>(max_codecs);
  }
  keel::compression kind() const noexcept { return kind_; }

  // At open, after loading: starts the background passes (with compression)
  // and asks for one if loaded values are raw.
  void start() {
    if (kind_ == compression::none) return;
    worker_.start([this] {
      try {
        pass(true);
      } catch (const std::bad_alloc&) {
        // Values stay raw; the next pass tries again.
      }
    });
    if (raw_bytes_since_pass_ > 0) worker_.request();
  }
  // Ends the background passes (a running one stops early). Idempotent.
  void stop() { worker_.stop(); }

  // `e`'s value, decompressed if need be, into `out`; false if it does not
  // decompress (only memory damage can cause that).
  bool decode(const pb_entry& e, std::string& out) const {
    const unsigned slot = e.codec();
    if (slot == 0) {
      out.assign(e.value());
      return true;
    }
    const value_codec* c = codecs_ ? codecs_[slot].load(std::memory_order_acquire) : nullptr;
    if (!c) return false;
    out.resize(e.raw_size());
    return c->decompress(e.value(), out.data(), out.size());
  }
  void decode_or_throw(const pb_entry& e, std::string& out) const {
    if (!decode(e, out)) throw std::runtime_error("keel memory store: a compressed value does not decompress");
  }
  static keel::error decode_error(std::string_view key) {
    return keel::error(errc::corruption, "memory store: the compressed value of key '" + std::string(key) +
                                             "' does not decompress (memory damage?)");
  }

  // Writers' mutex held, after raw values were published: wakes the
  // background pass once enough raw bytes piled up.
  void note_raw_bytes(std::size_t n) {
    if (kind_ == compression::none) return;
    raw_bytes_since_pass_ += n;
    if (raw_bytes_since_pass_ >= std::max(pass_min_bytes, held_value_bytes_ / 8)) worker_.request();
  }
  // note_raw_bytes() for the values `batch` put.
  void note_batch(const write_batch& batch) {
    if (kind_ == compression::none) return;
    std::size_t bytes = 0;
    for (const auto& op : batch)
      if (op.kind == write_batch::op_kind::put) bytes += op.value.size();
    note_raw_bytes(bytes);
  }
  // At open: raw value bytes loaded from the persisted form.
  void count_loaded_bytes(std::size_t n) noexcept { raw_bytes_since_pass_ += n; }

  // Codecs (dictionaries) in use: loaded at open plus trained since.
  std::size_t dictionaries() const {
    std::lock_guard compressing(mutex_);
    return codec_count_;
  }
  // Whether open installed a saved dictionary (install_saved_dictionary).
  bool dictionary_loaded() const noexcept { return dictionary_loaded_; }

  // The newest dictionary, for saving it beside the persisted form: its
  // slot (0: none yet, the rest unset), its bytes (valid while the store
  // exists) and the bytes of the sample it was trained on. Any thread.
  struct dictionary_view {
    unsigned slot = 0;
    std::string_view bytes;
    std::uint64_t trained_on = 0;
  };
  dictionary_view latest_dictionary() const {
    dictionary_view d;
    d.slot = latest_slot_.load(std::memory_order_acquire);
    if (d.slot == 0) return d;
    d.bytes = codecs_[d.slot].load(std::memory_order_acquire)->dictionary();
    d.trained_on = latest_trained_on_.load(std::memory_order_acquire);
    return d;
  }
  // At open: installs a saved dictionary (trained on `trained_on` sample
  // bytes) as slot 1; false when it cannot be built (then none is).
  bool install_saved_dictionary(std::string dict, std::uint64_t trained_on) {
    try {
      auto codec = std::make_unique<value_codec>(kind_, std::move(dict));
      codecs_[1].store(codec.release(), std::memory_order_release);
    } catch (const std::bad_alloc&) {
      return false;
    }
    codec_count_ = 1;
    latest_trained_on_.store(trained_on, std::memory_order_release);
    latest_slot_.store(1, std::memory_order_release);
    dictionary_loaded_ = true;
    next_training_ = trained_on < sample_bytes / 2 ? 8 * trained_on : std::numeric_limits<std::size_t>::max();
    return true;
  }

  // One pass over the current version, every keyspace: trains a dictionary
  // if due (one codec table for the store: a dictionary is trained on a
  // sample of every keyspace's values), then compresses every raw value not
  // tried yet, "" first, then each other keyspace of the version, publishing
  // chunk_entries replacements per new version (an entry changed meanwhile
  // is left alone; a keyspace dropped meanwhile is skipped). Values are read
  // from a version the pass holds, compressed outside the writers' mutex,
  // and swapped in under it.
  // background: the background thread's pass, which stops early at close().
  void pass(bool background) {
    std::lock_guard compressing(mutex_);
    store_version version = versions_.current_all();
    if (!versions_.is_open()) return;
    {
      std::lock_guard writer(versions_.writers());
      raw_bytes_since_pass_ = 0;
    }
    const std::size_t value_bytes = train_if_due(version);
    const unsigned slot = static_cast<unsigned>(codec_count_);
    const value_codec* codec = slot ? codecs_[slot].load(std::memory_order_relaxed) : nullptr;
    if (!codec) return;
    if (!compress_keyspace(version.main, nullptr, slot, *codec, background)) return;
    if (version.table) {
      for (const auto& root : *version.table)
        if (!compress_keyspace(version.tree_of(*root), root.get(), slot, *codec, background)) return;
    }
    std::lock_guard writer(versions_.writers());
    held_value_bytes_ = value_bytes;
  }

 private:
  // pass() for one keyspace's tree `version` (`keyspace`: its entry in the
  // pass's table; nullptr: ""); false when the pass must stop (closed, or
  // the background pass is stopping).
  bool compress_keyspace(const tree& version, const keyspace_root* keyspace, unsigned slot, const value_codec& codec,
                         bool background) {
    struct replacement {
      std::string key, stored;
      const pb_entry* was;
      std::uint32_t form;
      std::int64_t deadline;  // kept as it was (expiry)
    };
    std::vector<replacement> chunk;
    auto commit = [&] {
      if (chunk.empty()) return;
      std::lock_guard writer(versions_.writers());
      if (!versions_.is_open()) return;
      const keyspace_root* now = nullptr;
      if (keyspace) {
        now = store_version::find_root(versions_.current_others().get(), keyspace->name);
        if (!now || now->id != keyspace->id) return chunk.clear();  // dropped since: nothing to do
      }
      tree::transient edit(now ? now->tree : versions_.current());
      bool changed = false;
      for (const auto& r : chunk) {
        if (edit.find(r.key) != r.was) continue;  // written since: raw, a later pass takes it
        edit.insert_or_assign(r.key, r.stored, r.form, r.deadline);
        changed = true;
      }
      if (changed && now) {
        versions_.publish(versions_.current(),
                          with_keyspace(versions_.current_others().get(),
                                        std::make_shared<const keyspace_root>(
                                            keyspace_root{now->name, now->id, std::move(edit).persist()})));
      } else if (changed) {
        versions_.publish(std::move(edit).persist());
      }
      chunk.clear();
    };
    tree::cursor it(version);
    for (it.seek_first(); it.valid(); it.next()) {
      const pb_entry* e = it.entry();
      if (e->codec() != 0 || e->compression_tried()) continue;
      const std::string_view raw = e->value();
      std::optional<std::string_view> packed;
      if (raw.size() <= pb_entry::max_compressed_raw_size) packed = codec.compress(raw, ctx_);
      if (!packed) {
        e->mark_compression_tried();
        continue;
      }
      chunk.push_back({std::string(e->key()), std::string(*packed), e, pb_entry::compressed_form(slot, raw.size()),
                       e->deadline()});
      if (chunk.size() >= chunk_entries) {
        commit();
        if (!versions_.is_open() || (background && worker_.stopping())) return false;
      }
    }
    commit();
    return versions_.is_open();
  }
  // Calls fn(tree) for the tree of every keyspace of `version`.
  template <class Fn>
  static void for_each_tree(const store_version& version, Fn&& fn) {
    fn(version.main);
    if (version.table)
      for (const auto& root : *version.table) fn(version.tree_of(*root));
  }

  // Trains and installs a new codec when due (mutex_ held): the first once
  // the store's raw sampleable values (up to 16 KiB, not compressed) reach
  // train_min_bytes, then when they reach 8 times what the newest
  // dictionary was trained on (never after a sample of 2 MiB or more);
  // after a failed training, when they doubled. Returns the bytes of all
  // values held (uncompressed).
  std::size_t train_if_due(const store_version& version) {
    std::size_t all_values = 0, sampleable = 0, candidates = 0;
    for_each_tree(version, [&](const tree& t) {
      tree::cursor it(t);
      for (it.seek_first(); it.valid(); it.next()) {
        const pb_entry* e = it.entry();
        all_values += e->raw_size();
        if (e->codec() == 0 && e->value().size() <= sample_value_limit && !e->value().empty()) {
          sampleable += e->value().size();
          ++candidates;
        }
      }
    });
    if (sampleable < next_training_ || codec_count_ + 1 >= max_codecs) return all_values;
    // Every stride-th sampleable value, about sample_bytes in all.
    const std::size_t stride = sampleable / sample_bytes + 1;
    std::vector<std::string_view> samples;
    samples.reserve(candidates / stride + 1);
    std::size_t taken = 0, index = 0;
    for_each_tree(version, [&](const tree& t) {
      tree::cursor it(t);
      for (it.seek_first(); it.valid(); it.next()) {
        const pb_entry* e = it.entry();
        if (e->codec() != 0 || e->value().size() > sample_value_limit || e->value().empty()) continue;
        if (index++ % stride != 0) continue;
        samples.push_back(e->value());
        taken += e->value().size();
      }
    });
    std::string dict = train_dictionary(kind_, samples, std::min(dictionary_bytes, taken / 4));
    if (dict.empty()) {  // too few or too random: try again once they doubled
      next_training_ = 2 * sampleable;
      return all_values;
    }
    auto codec = std::make_unique<value_codec>(kind_, std::move(dict));
    codecs_[codec_count_ + 1].store(codec.release(), std::memory_order_release);
    ++codec_count_;
    latest_trained_on_.store(taken, std::memory_order_release);
    latest_slot_.store(static_cast<unsigned>(codec_count_), std::memory_order_release);
    next_training_ = taken < sample_bytes / 2 ? 8 * taken : std::numeric_limits<std::size_t>::max();
    // Values the old dictionary kept raw get a try with the new one.
    for_each_tree(version, [](const tree& t) {
      tree::cursor again(t);
      for (again.seek_first(); again.valid(); again.next()) {
        const pb_entry* e = again.entry();
        if (e->codec() == 0 && e->compression_tried()) e->clear_compression_tried();
      }
    });
    return all_values;
  }

  memory_versions& versions_;
  keel::compression kind_ = compression::none;
  std::unique_ptr<std::atomic<const value_codec*>[]> codecs_;  // max_codecs slots (with compression)
  mutable std::mutex mutex_;  // serialises passes; guards the members below it but the atomics
  std::size_t codec_count_ = 0;  // slots filled: 1..codec_count_
  // The newest slot and the sample bytes its dictionary was trained on, for
  // saving it without mutex_ (saves run with the writers' mutex held).
  std::atomic<unsigned> latest_slot_{0};
  std::atomic<std::uint64_t> latest_trained_on_{0};
  bool dictionary_loaded_ = false;  // set at open, before the store is shared
  std::size_t next_training_ = train_min_bytes;  // raw sampleable bytes that make a new dictionary due
  compress_context ctx_;
  std::size_t raw_bytes_since_pass_ = 0;  // guarded by the writers' mutex
  std::size_t held_value_bytes_ = 0;      // guarded by the writers' mutex: value bytes at the last pass
  background_worker worker_;              // background passes
};

}  // namespace keel::detail
