#!/usr/bin/env bash
# Builds the Debian package. Usage:
#   scripts/build-deb.sh                 release build, then target/debian/eas-gateway_*.deb
#   scripts/build-deb.sh --from BINARY   package an already built binary (the tests use the
#                                        debug build: a release build takes minutes)
# Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "== installing cargo-deb (a build tool, not a dependency)" >&2
  cargo install cargo-deb --locked >&2
fi

if [[ ${1:-} == --from ]]; then
  binary=$(realpath "$2")
  # cargo-deb takes the binary from $CARGO_TARGET_DIR/release/; give it one of its own so
  # the real target directory's release build (if any) is neither used nor touched.
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch/release"
  cp "$binary" "$scratch/release/eas-gateway"
  out=${DEB_OUT:-target/debian}
  mkdir -p "$out"
  CARGO_TARGET_DIR=$scratch cargo deb --no-build --no-strip --fast --output "$out" >&2
  ls -t "$out"/eas-gateway_*.deb | head -1
else
  cargo deb --locked >&2
  ls -t "${CARGO_TARGET_DIR:-target}"/debian/eas-gateway_*.deb | head -1
fi
