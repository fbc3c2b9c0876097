#!/usr/bin/env bash
# The gateway's main job, as a demo: a private Dovecot with a demo user and a few messages, and
# the gateway in front of it on HTTPS (self-signed certificate) with the embedded state store.
# Installs Dovecot, lua-socket and Postfix when missing, like scripts/test.sh. Extra arguments go
# to `eas-demo` (e.g. --listen 0.0.0.0:8443 --host mail.lan, or --push dovecot-events for push
# from Dovecot's own events). Stop with Ctrl-C.
# The demo is a binary of the dev-only crate eas-testbed (testbed/), not a subcommand of the
# shipped eas-gateway, so the test bed that starts the private Dovecot is not in that binary.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-imapd dovecot-lmtpd)
[ -e /usr/share/lua/5.4/socket.lua ] || missing+=(lua-socket)
# Postfix lets the demo send (SendMail/SmartReply/SmartForward into the same Dovecot).
[ -x /usr/sbin/postfix ] || missing+=(postfix)
# Radicale gives the demo user contacts, a calendar and tasks.
[ -x /usr/bin/radicale ] || missing+=(radicale)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing ${missing[*]}"
  # Postfix's installer asks how to configure the system's own mail; the demo runs a private one.
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
exec cargo run --release --locked -p eas-testbed --bin eas-demo -- "$@"
