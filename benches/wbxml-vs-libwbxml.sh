#!/usr/bin/env bash
# Compares our WBXML decoder with libwbxml's on the same files, two ways:
#  1. whole processes: libwbxml's `wbxml2xml` against `eas-gateway wbxml decode`, both writing
#     the readable XML to a file (process start-up included);
#  2. in process: libwbxml's wbxml2xml conversion in a C loop (benches/libwbxml_loop.c) against
#     our `decode_loop` example, which also times decoding into the element tree.
# Not part of CI. Usage: benches/wbxml-vs-libwbxml.sh [RUNS]   (default 20 runs per file)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}

if ! command -v wbxml2xml >/dev/null || ! pkg-config --exists libwbxml2 2>/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -qq libwbxml2-utils libwbxml2-dev pkg-config >/dev/null
fi

cargo build --release -q --bin eas-gateway
cargo build --release -q -p eas-wbxml --example sync_sample --example decode_loop
ours=target/release/eas-gateway
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/examples/sync_sample "$work/sync200.wbxml" 200
target/release/examples/sync_sample "$work/sync2000.wbxml" 2000

# Wall-clock seconds for RUNS runs of a command over a list of files.
timed() {
  local start end
  start=$(date +%s%N)
  for ((r = 0; r < runs; r++)); do
    for f in "${@:2}"; do
      $1 "$f" >/dev/null 2>&1 || { echo "failed: $1 $f" >&2; exit 1; }
    done
  done
  end=$(date +%s%N)
  echo $(( (end - start) / 1000 ))  # microseconds
}
libwbxml() { wbxml2xml -l ACTIVESYNC -o "$work/out.xml" "$1"; }
eas() { "$ours" wbxml decode "$1" -o "$work/out.xml"; }

report() {
  local label=$1; shift
  local bytes=0
  for f in "$@"; do bytes=$((bytes + $(stat -c %s "$f"))); done
  local t_lib t_eas
  t_lib=$(timed libwbxml "$@")
  t_eas=$(timed eas "$@")
  awk -v l="$label" -v n="$#" -v b="$bytes" -v r="$runs" -v tl="$t_lib" -v te="$t_eas" 'BEGIN {
    ml = b * r / tl; me = b * r / te;   # bytes per microsecond = MB/s
    printf "%-22s %4d file(s) %9d bytes | libwbxml %8.2f ms %7.1f MB/s | eas-gateway %8.2f ms %7.1f MB/s | %5.1fx\n",
      l, n, b, tl / r / 1000, ml, te / r / 1000, me, tl / te }'
}

echo "== 1. whole process (start-up included), output written to a file; $runs runs"
report "sync 200 items" "$work/sync200.wbxml"
report "sync 2000 items" "$work/sync2000.wbxml"
report "all fixtures" fixtures/wbxml/*.wbxml

echo
echo "== 2. in process, mean of $runs iterations (MB/s of WBXML input)"
# shellcheck disable=SC2046
gcc -O2 -o "$work/libwbxml_loop" benches/libwbxml_loop.c $(pkg-config --cflags --libs libwbxml2)
big=("$work/sync200.wbxml" "$work/sync2000.wbxml")
join -t $'\t' <("$work/libwbxml_loop" "$runs" "${big[@]}" | sort) \
  <(target/release/examples/decode_loop "$runs" "${big[@]}" | cut -f1,3- | sort) |
  awk -F'\t' 'function name(p) { sub(/.*\//, "", p); return p } {
    printf "%-16s %9d bytes | libwbxml ->xml %7.2f ms %6.1f MB/s | ours ->xml %6.2f ms %6.1f MB/s (%4.1fx) | ours ->tree %6.2f ms %6.1f MB/s (%4.1fx)\n",
      name($1), $2, $3, $4, $5, $6, $3 / $5, $7, $8, $3 / $7 }'
