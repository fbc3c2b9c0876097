#!/usr/bin/env bash
# The gateway's main job, as a demo: a private Dovecot with a demo user and a few messages, and
# the gateway in front of it on HTTPS (self-signed certificate) with the embedded state store.
# Installs Dovecot when missing, like scripts/test.sh. Extra arguments go to `eas-gateway demo`
# (e.g. --listen 0.0.0.0:8443 --host mail.lan). Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/sbin/dovecot ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing dovecot-imapd dovecot-lmtpd"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dovecot-imapd dovecot-lmtpd >/dev/null
fi
exec cargo run --release --locked -- demo "$@"
