#!/bin/sh
# Push load test (benches/push_load.rs) with the machine prepared for it:
#  - the file-descriptor limit raised as far as this shell may (the bench raises its own too);
#  - fs.inotify.max_user_instances raised (as root) when below what the run needs: every
#    IDLE/NOTIFY connection is a Dovecot imap process with its own inotify instance, all as
#    one user, and past the limit (128 on Debian) Dovecot silently falls back to looking every
#    30 s, which turns 0.5 s pushes into 15 s ones.
# Usage: benches/push-load.sh [--devices N --users M --rate R --duration S --mode notify|idle ...]
set -eu
cd "$(dirname "$0")/.."

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

want=65536
limit=/proc/sys/fs/inotify/max_user_instances
if [ -r "$limit" ] && [ "$(cat "$limit")" -lt "$want" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "push-load.sh: fs.inotify.max_user_instances $(cat "$limit") -> $want" >&2
        echo "$want" >"$limit"
    else
        echo "push-load.sh: fs.inotify.max_user_instances is $(cat "$limit"); run as root or" \
             "raise it (sysctl -w fs.inotify.max_user_instances=$want)" >&2
    fi
fi

exec cargo bench --bench push_load -- "$@"
