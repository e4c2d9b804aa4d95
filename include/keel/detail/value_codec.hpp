// keel::detail: compressing and decompressing the memory backend's values
// with zstd or lz4 and a dictionary (docs/compression.md).
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
#pragma once

#include <cstddef>
#include <cstring>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "../compression.hpp"
#include "../error.hpp"
#include "thread_exit.hpp"

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

}  // namespace keel::detail
