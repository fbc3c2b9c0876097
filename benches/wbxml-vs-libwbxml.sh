#!/usr/bin/env bash
# Times libwbxml's `wbxml2xml` and our `eas-gateway wbxml decode` on the same WBXML files, both
# writing the readable XML to a file, so the two decoders can be compared side by side.
# Not part of CI. Usage: benches/wbxml-vs-libwbxml.sh [RUNS]   (default 20 runs per file)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
command -v wbxml2xml >/dev/null || { echo "install libwbxml2-utils first" >&2; exit 1; }

cargo build --release -q --bin eas-gateway
cargo build --release -q -p eas-wbxml --example sync_sample
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

echo "per run, whole process (start-up included), output written to a file; $runs runs"
report "sync 200 items" "$work/sync200.wbxml"
report "sync 2000 items" "$work/sync2000.wbxml"
report "all fixtures" fixtures/wbxml/*.wbxml
