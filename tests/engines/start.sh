#!/usr/bin/env bash
# Start a real single-node OpenSearch or Elasticsearch on loopback for tests and trials.
#
#   tests/engines/start.sh opensearch|elasticsearch [NAME] [-Ekey=value ...]
#
# Prints the node's base URL (http://127.0.0.1:PORT) on stdout once the cluster answers with
# status yellow or green, and exits 0; the node keeps running until tests/engines/stop.sh.
# NAME (default: the engine) lets several nodes of one engine run at once; -E settings are
# passed to the node (for example -Ethread_pool.write.queue_size=1).  Starting a NAME that
# already runs prints its URL again.
#
# The distribution (the engine's integ-test-zip from Maven Central, fetched with mvn) is cached
# in $AUDITFWD_ENGINES_CACHE; each node gets a fresh temporary directory for its copy of the
# distribution, config, data and logs, removed by stop.sh.  Ports are chosen by the node
# (http.port: 0) and read from the ports file it writes.  Security is off: plain HTTP, no
# credentials.  On failure the tail of the node's log goes to stderr and the exit status is 1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/engines/common.sh
. "$here/common.sh"

[ $# -ge 1 ] || die "usage: start.sh opensearch|elasticsearch [NAME] [-Ekey=value ...]"
engine="$1"
shift
name="$engine"
if [ $# -ge 1 ] && [ "${1#-}" = "$1" ]; then
    name="$1"
    shift
fi
extra_settings=("$@")
engine_settings "$engine"
state="$(state_dir "$engine" "$name")"

# Already running: answer with its URL.
if [ -f "$state/url" ] && [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    cat "$state/url"
    exit 0
fi
rm -rf "$state"

java_major() {
    # Major version of the JDK in $1 (empty when there is none).
    [ -x "$1/bin/java" ] || return 0
    "$1/bin/java" -version 2>&1 | sed -n -E '1s/.*version "([0-9]+).*/\1/p'
}

find_java() {
    local candidates=() path_java
    [ -n "${!ENGINE_JAVA_VAR:-}" ] && candidates+=("${!ENGINE_JAVA_VAR}")
    [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME")
    if path_java="$(command -v java 2>/dev/null)"; then
        candidates+=("$(dirname "$(dirname "$(readlink -f "$path_java")")")")
    fi
    local jdk
    for jdk in /usr/lib/jvm/* /opt/*jdk* /opt/java/*; do
        [ -d "$jdk" ] && candidates+=("$jdk")
    done
    local major
    for jdk in "${candidates[@]}"; do
        major="$(java_major "$jdk")"
        if [ -n "$major" ] && [ "$major" -ge "$ENGINE_MIN_JAVA" ]; then
            echo "$jdk"
            return 0
        fi
    done
    return 1
}

fetch_distribution() {
    # Path of the cached integ-test-zip, fetched with mvn into the cache's own local repository.
    local repo="$ENGINES_CACHE/m2"
    local zip="$repo/${ENGINE_GROUP//.//}/$engine/$ENGINE_VERSION/$engine-$ENGINE_VERSION.zip"
    if [ ! -s "$zip" ]; then
        command -v mvn >/dev/null || die "mvn is needed to fetch $engine $ENGINE_VERSION"
        mkdir -p "$repo"
        echo "fetching $ENGINE_GROUP:$engine:$ENGINE_VERSION:zip" >&2
        mvn -q -B -Dmaven.repo.local="$repo" dependency:get -Dtransitive=false \
            -Dartifact="$ENGINE_GROUP:$engine:$ENGINE_VERSION:zip" >&2 \
            || die "mvn could not fetch $ENGINE_GROUP:$engine:$ENGINE_VERSION:zip"
        [ -s "$zip" ] || die "mvn reported success but $zip is missing"
    fi
    echo "$zip"
}

java_home="$(find_java)" || die "no JDK >= $ENGINE_MIN_JAVA found for $engine $ENGINE_VERSION (set $ENGINE_JAVA_VAR)"
zip="$(fetch_distribution)"
command -v unzip >/dev/null || die "unzip is needed"

run="$(mktemp -d -t "auditfwd-$name.XXXXXX")"
chmod 755 "$run"
unzip -q "$zip" -d "$run"
home="$run/$engine-$ENGINE_VERSION"
conf="$run/config"
cp -r "$home/config" "$conf"
mkdir -p "$run/data" "$run/logs" "$run/tmp"

# Heap fixed and small (two cores, several nodes and the tests share the machine); the GC log
# and heap dump lines of the stock jvm.options point at paths relative to the working
# directory, so they are replaced.
sed -i -E '/-Xlog:|HeapDump|ErrorFile/d' "$conf/jvm.options"
cat > "$conf/jvm.options.d/auditfwd.options" <<OPTIONS
-Xms$ENGINES_HEAP
-Xmx$ENGINES_HEAP
-XX:ErrorFile=$run/logs/hs_err_pid%p.log
OPTIONS

{
    echo "cluster.name: auditfwd-$name"
    echo "node.name: $name"
    echo "path.data: $run/data"
    echo "path.logs: $run/logs"
    echo "network.host: 127.0.0.1"
    echo "http.port: 0"
    echo "transport.port: 0"
    echo "node.portsfile: true"
    echo "discovery.type: single-node"
    # A nearly full disk must not turn the test indices read-only.
    echo "cluster.routing.allocation.disk.threshold_enabled: false"
    if [ "$engine" = elasticsearch ]; then
        echo "xpack.security.enabled: false"
    fi
} >> "$conf/$ENGINE_BIN.yml"

run_as=()
if [ "$(id -u)" = 0 ]; then
    user="${AUDITFWD_ENGINES_USER:-nobody}"
    group="$(id -gn "$user")"
    chown -R "$user:$group" "$run"
    run_as=(setpriv "--reuid=$user" "--regid=$group" --clear-groups)
fi

mkdir -p "$state"
echo "$run" > "$state/run"
started=$(date +%s)
log_tail() {
    echo "--- $engine ($name) did not start; last lines of its output and log:" >&2
    tail -n 40 "$run/stdout.log" >&2 2>/dev/null || true
    tail -n 60 "$run/logs/auditfwd-$name.log" >&2 2>/dev/null || true
}
fail() {
    log_tail
    if [ -f "$state/pid" ]; then
        kill "$(cat "$state/pid")" 2>/dev/null || true
    fi
    die "$*"
}

# -d detaches the node; -p writes its pid.  Elasticsearch's launcher waits for the node to
# start before it returns, OpenSearch's returns at once.
if ! (cd "$run" && env HOME="$run/tmp" "$ENGINE_JAVA_VAR=$java_home" "$ENGINE_CONF_VAR=$conf" \
        "$ENGINE_TMP_VAR=$run/tmp" "${run_as[@]}" "$home/bin/$ENGINE_BIN" -d -p "$run/pid" \
        "${extra_settings[@]}" > "$run/stdout.log" 2>&1); then
    fail "the $engine launcher failed"
fi

deadline=$((started + ENGINES_TIMEOUT))
url=""
while [ "$(date +%s)" -lt "$deadline" ]; do
    [ -f "$run/pid" ] && cp "$run/pid" "$state/pid"
    if [ -f "$state/pid" ] && ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
        fail "the $engine node exited while starting"
    fi
    if [ -z "$url" ] && [ -s "$run/logs/http.ports" ]; then
        url="http://$(head -n 1 "$run/logs/http.ports")"
    fi
    if [ -n "$url" ] && curl -fsS -m 5 "$url/_cluster/health?wait_for_status=yellow&timeout=5s" \
            2>/dev/null | grep -qE '"status":"(yellow|green)"'; then
        echo "$url" > "$state/url"
        echo "$engine $ENGINE_VERSION ($name) answers at $url after $(( $(date +%s) - started )) s" >&2
        echo "$url"
        exit 0
    fi
    sleep 1
done
fail "no answer from $engine within $ENGINES_TIMEOUT s"
