#!/usr/bin/env bash
# The gateway's main job, as a demo: a private Dovecot with a demo user and a few messages, and
# the gateway in front of it on HTTPS (self-signed certificate) with the embedded state store.
# Installs Dovecot when missing, like scripts/test.sh. Extra arguments go to `eas-gateway demo`
# (e.g. --listen 0.0.0.0:8443 --host mail.lan, or --push dovecot-events for push from Dovecot's
# own events). Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-imapd dovecot-lmtpd)
[ -e /usr/share/lua/5.4/socket.lua ] || missing+=(lua-socket)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
exec cargo run --release --locked -- demo "$@"
