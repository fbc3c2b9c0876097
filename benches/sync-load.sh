#!/bin/sh
# Email Sync load benchmarks (benches/sync_load.rs): initial sync against raw IMAP, no-change
# Sync latency, memory while paging. Installs the private Dovecot's packages when missing
# (as root), then runs the bench; arguments go to it unchanged.
# Usage: benches/sync-load.sh [initial] [idle] [memory] [--messages N] [--idle-sizes A,B]
#        [--iterations N] [--setup-window N] [--memory-messages N] [--fill maildir|append]
set -eu
cd "$(dirname "$0")/.."

if [ ! -x /usr/lib/dovecot/imap ] || [ ! -x /usr/lib/dovecot/lmtp ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq dovecot-imapd dovecot-lmtpd >/dev/null
    else
        echo "sync-load.sh: install dovecot-imapd and dovecot-lmtpd first" >&2
        exit 1
    fi
fi

exec cargo bench --bench sync_load -- "$@"
