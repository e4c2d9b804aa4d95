#!/usr/bin/env bash
# Runs keel's benchmark suite and regenerates docs/benchmarks.md and its charts.
#
#   bash bench/run.sh            # full suite: 10k, 100k and 1M keys (~10-15 min)
#   bash bench/run.sh --quick    # smoke run: 10k and 100k keys, fewer repetitions;
#                                # its report goes to bench/results/quick/, not docs/
#   bash bench/run.sh --benchmark_filter='get_hit/.*'   # extra args go to the binary
#
# Builds in build-bench/ (buildtype=release), writes
# bench/results/<UTC time>[-quick].json (Google Benchmark JSON, aggregates of
# the repetitions), then bench/report.py draws docs/bench-*.png and rewrites
# the generated part of docs/benchmarks.md.
#
# Environment: KEEL_BENCH_REPS (repetitions, default 5; 3 with --quick),
# KEEL_BENCH_MIN_TIME (seconds per repetition, default 0.2),
# KEEL_BENCH_DIR (where the RocksDB datasets go; default a fresh /tmp dir),
# KEEL_SKIP_SETUP=1 (do not install packages).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

quick=0
args=()
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    *) args+=("$a") ;;
  esac
done

# Build dependencies (g++, meson, RocksDB, Google Benchmark, ...).
bash scripts/setup-debian.sh

# The charts need matplotlib, from Debian's python3-matplotlib: use the
# system interpreter (a pyenv or venv python3 first in PATH would not see it).
python=python3
if [[ -x /usr/bin/python3 ]]; then python=/usr/bin/python3; fi
if [[ "${KEEL_SKIP_SETUP:-}" != 1 ]] && ! "$python" -c 'import matplotlib' 2>/dev/null; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=()
    if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
    echo "bench/run.sh: installing python3-matplotlib for the charts" >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -qq install -y --no-install-recommends python3-matplotlib >/dev/null ||
      echo "bench/run.sh: could not install python3-matplotlib; the tables will be written without charts" >&2
  fi
fi

build=build-bench
if [[ -f "$build/meson-private/coredata.dat" ]]; then
  meson setup --reconfigure "$build" --buildtype=release -Dbench=true --wrap-mode=nodownload >/dev/null
else
  meson setup "$build" --buildtype=release -Dbench=true --wrap-mode=nodownload >/dev/null
fi
meson compile -C "$build" bench/keel_bench bench/keel_dump_bench bench/keel_tx_bench bench/keel_tuning_bench bench/keel_compression_bench bench/keel_hybrid_bench
if [[ -f "$build/build.ninja" ]] && grep -q 'build bench/keel_etcd_bench:' "$build/build.ninja"; then
  meson compile -C "$build" bench/keel_etcd_bench
fi

reps="${KEEL_BENCH_REPS:-5}"
size_args=()
suffix=""
if ((quick)); then
  reps="${KEEL_BENCH_REPS:-3}"
  size_args=(--keel-quick)
  suffix="-quick"
fi
if [[ -n "${KEEL_BENCH_DIR:-}" ]]; then size_args+=("--keel-dir=$KEEL_BENCH_DIR"); fi

mkdir -p bench/results
out="bench/results/$(date -u +%Y%m%dT%H%M%SZ)$suffix.json"
echo "bench/run.sh: running; results go to $out" >&2
"$build/bench/keel_bench" "${size_args[@]}" \
  --benchmark_repetitions="$reps" \
  --benchmark_report_aggregates_only=true \
  --benchmark_min_time="${KEEL_BENCH_MIN_TIME:-0.2}" \
  --benchmark_out="$out" --benchmark_out_format=json \
  "${args[@]}"

# The concurrent benchmarks (3 threads on what may be 2 shared CPUs) are the
# noisiest: run them again for the memory backends and the map baseline with
# 3x the repetitions; report.py takes these medians instead.
extra="${out%.json}-concurrent.json"
if [[ ${#args[@]} -eq 0 ]]; then
  "$build/bench/keel_bench" "${size_args[@]}" \
    --benchmark_filter='^concurrent(_paced)?/(memory|any_memory|virtual_memory|map)/' \
    --benchmark_repetitions=$((3 * reps)) \
    --benchmark_report_aggregates_only=true \
    --benchmark_out="$extra" --benchmark_out_format=json
else
  extra=""
fi

# Moving data in bulk (export/import/copy against raw RocksDB loops): 1M
# records (100k with --quick), 3 repetitions; its table is in
# docs/dump-format.md, written by hand from this output.
dump_out="${out%.json}-dump.json"
if [[ ${#args[@]} -eq 0 ]]; then
  dump_records=1000000
  if ((quick)); then dump_records=100000; fi
  "$build/bench/keel_dump_bench" --keel-records="$dump_records" \
    ${KEEL_BENCH_DIR:+"--keel-dir=$KEEL_BENCH_DIR"} \
    --benchmark_repetitions=3 \
    --benchmark_out="$dump_out" --benchmark_out_format=json
else
  dump_out=""
fi

# Transactions and multi_get (issue 12) against their baselines (plain reads
# and batches, RocksDB's OptimisticTransactionDB, std::map + mutex): its table
# is in docs/benchmarks.md ("Transactions and multi_get"), written by hand
# from this output.
tx_out="${out%.json}-tx.json"
if [[ ${#args[@]} -eq 0 ]]; then
  "$build/bench/keel_tx_bench" ${KEEL_BENCH_DIR:+"--keel-dir=$KEEL_BENCH_DIR"} \
    --benchmark_repetitions="$reps" \
    --benchmark_report_aggregates_only=true \
    --benchmark_min_time="${KEEL_BENCH_MIN_TIME:-0.2}" \
    --benchmark_out="$tx_out" --benchmark_out_format=json
else
  tx_out=""
fi

# RocksDB settings one at a time against RocksDB's defaults (raw RocksDB, 1M
# keys; 100k with --quick): the "RocksDB tuning" table of docs/benchmarks.md,
# written by hand from this output. The space/write amplification pass (amp/,
# about 80 s per variant) runs with KEEL_BENCH_AMP=1 only.
tuning_out="${out%.json}-tuning.json"
if [[ ${#args[@]} -eq 0 ]]; then
  tuning_keys=1000000
  if ((quick)); then tuning_keys=100000; fi
  tuning_filter='^(get_miss|get_hit|scan1000|put)/'
  if [[ "${KEEL_BENCH_AMP:-}" == 1 ]]; then tuning_filter='.'; fi
  "$build/bench/keel_tuning_bench" --keel-keys="$tuning_keys" \
    ${KEEL_BENCH_DIR:+"--keel-dir=$KEEL_BENCH_DIR"} \
    --benchmark_filter="$tuning_filter" \
    --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
    --benchmark_min_time="${KEEL_BENCH_MIN_TIME:-0.2}" \
    --benchmark_out="$tuning_out" --benchmark_out_format=json
else
  tuning_out=""
fi

# Value compression of memory stores (issue 13): get with none / lz4 / zstd
# on Debian package records and paths under /usr, held-bytes ratios as
# counters: the table in docs/compression.md, written by hand from this output.
compression_out="${out%.json}-compression.json"
if [[ ${#args[@]} -eq 0 ]]; then
  "$build/bench/keel_compression_bench" \
    --benchmark_repetitions="$reps" \
    --benchmark_report_aggregates_only=true \
    --benchmark_min_time="${KEEL_BENCH_MIN_TIME:-0.2}" \
    --benchmark_out="$compression_out" --benchmark_out_format=json
else
  compression_out=""
fi

# The hybrid store (issue 13): fold and open of a persisted memory store at
# 16/64/256 MiB, the move to RocksDB and the open after it: the table in
# docs/hybrid.md (why spill_bytes defaults to 64 MiB), written by hand.
hybrid_out="${out%.json}-hybrid.json"
if [[ ${#args[@]} -eq 0 ]]; then
  "$build/bench/keel_hybrid_bench" --benchmark_out="$hybrid_out" --benchmark_out_format=json
else
  hybrid_out=""
fi

# The etcd backend (issue 14) against a raw libcurl client and, when Debian's
# python3-etcd3 is installed, python3-etcd3 over gRPC, on one etcd member it
# starts on 127.0.0.1 (data on tmpfs): the etcd table of docs/benchmarks.md,
# written by hand from this output. Only when keel was built with the etcd
# backend (bench/keel_etcd_bench exists).
etcd_out="${out%.json}-etcd.json"
if [[ ${#args[@]} -eq 0 && -x "$build/bench/keel_etcd_bench" ]]; then
  python_peer=()
  if /usr/bin/python3 -c 'import etcd3' 2>/dev/null; then python_peer=(--python=bench/etcd_python.py); fi
  "$build/bench/keel_etcd_bench" "${python_peer[@]}" \
    --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
    --benchmark_min_time=2 \
    --benchmark_out="$etcd_out" --benchmark_out_format=json
else
  etcd_out=""
fi

docs=docs
if ((quick)); then docs=bench/results/quick; fi  # a smoke run does not replace the published results
"$python" bench/report.py "$out" ${extra:+"$extra"} --docs "$docs"
echo "bench/run.sh: wrote $out${extra:+, $extra}${dump_out:+, $dump_out}${tx_out:+, $tx_out}${tuning_out:+, $tuning_out}${compression_out:+, $compression_out}${hybrid_out:+, $hybrid_out}${etcd_out:+, $etcd_out}, $docs/benchmarks.md and $docs/bench-*.png" >&2
