#!/usr/bin/env bash
# The one command that runs every check of the project: installs the system packages the tests
# need when they are missing, then formatting, lints and the whole test suite.
# `.ci/run` calls exactly this. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use, as "command package" pairs. Tests never skip when one is
# missing; they fail and name the package, so install them here first.
required=(
  "wbxml2xml libwbxml2-utils"
  "/usr/sbin/dovecot dovecot-imapd"
  "/usr/lib/dovecot/lmtp dovecot-lmtpd"
  "/usr/sbin/nginx nginx"
  "/usr/sbin/postfix postfix"
  "/usr/share/lua/5.4/socket.lua lua-socket"
  "/usr/bin/radicale radicale"
  "/usr/bin/xandikos xandikos"
  "systemd-analyze systemd"
  "dpkg-deb dpkg"
  "setpriv util-linux"
  "/usr/lib/python3/dist-packages/prometheus_client/parser.py python3-prometheus-client"
  "/usr/lib/dovecot/managesieve dovecot-managesieved"
  "/usr/lib/dovecot/modules/lib90_sieve_plugin.so dovecot-sieve"
  "/usr/sbin/mariadbd mariadb-server"
  "/usr/sbin/slapd slapd"
  # The state store's tests run a private cluster (initdb + postgres from this directory);
  # Debian 12's `postgresql` is version 15. The system cluster it sets up is never used.
  "/usr/lib/postgresql/15/bin/initdb postgresql"
)
missing=()
for pair in "${required[@]}"; do
  set -- $pair
  if [[ $1 == /* ]]; then [ -e "$1" ] || missing+=("$2"); else command -v "$1" >/dev/null 2>&1 || missing+=("$2"); fi
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing ${missing[*]}"
  $sudo apt-get update -qq
  # Postfix asks how to configure itself; the tests bring their own configuration.
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  # slapd would ask for a domain and an admin password; the tests run their own slapd.
  echo "slapd slapd/no_configuration boolean true" | $sudo debconf-set-selections
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# tests/debian_package.rs builds the .deb with cargo-deb, a build tool (not a dependency).
if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "== installing cargo-deb"
  cargo install cargo-deb --locked
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
