#!/usr/bin/env bash
# Stop a node started by tests/engines/start.sh and remove its temporary directory.
#
#   tests/engines/stop.sh opensearch|elasticsearch [NAME]
#
# AUDITFWD_ENGINES_KEEP=1 keeps the directory (data and logs) for a look afterwards; its path
# is printed.  Stopping a node that does not run is not an error.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/engines/common.sh
. "$here/common.sh"

[ $# -ge 1 ] || die "usage: stop.sh opensearch|elasticsearch [NAME]"
engine="$1"
name="${2:-$engine}"
engine_settings "$engine"
state="$(state_dir "$engine" "$name")"
[ -d "$state" ] || exit 0

# Seconds a node gets to shut down cleanly before it is killed.
grace=30
if [ -f "$state/pid" ]; then
    pid="$(cat "$state/pid")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq "$grace"); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$engine ($name) still runs after $grace s: killing it" >&2
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
fi
if [ -f "$state/run" ]; then
    run="$(cat "$state/run")"
    if [ "${AUDITFWD_ENGINES_KEEP:-0}" = 1 ]; then
        echo "kept $run" >&2
    elif [ -n "$run" ] && [ -d "$run" ]; then
        rm -rf "$run"
    fi
fi
rm -rf "$state"
