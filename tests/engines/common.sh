# Shared settings of tests/engines/start.sh and stop.sh (sourced, not run).
#
# Which builds: the integ-test-zip distributions that Maven Central serves. Elasticsearch 9 has
# no such zip there; 8.19 is the newest that has one.
#
# Environment (all optional):
#   AUDITFWD_ENGINES_CACHE   downloads and the state of running nodes
#                            (default: ${XDG_CACHE_HOME:-$HOME/.cache}/auditfwd-engines)
#   AUDITFWD_ENGINES_USER    user that runs the nodes when started as root; both engines refuse
#                            to run as root (default: nobody)
#   AUDITFWD_ENGINES_TIMEOUT seconds to wait for a node to answer (default: 240)
#   AUDITFWD_ENGINES_HEAP    JVM heap of each node, -Xms and -Xmx (default: 512m)
#   OPENSEARCH_VERSION, ELASTICSEARCH_VERSION
#   OPENSEARCH_JAVA_HOME, ES_JAVA_HOME   JDKs to run them with (found when unset)

OPENSEARCH_VERSION="${OPENSEARCH_VERSION:-3.6.0}"
ELASTICSEARCH_VERSION="${ELASTICSEARCH_VERSION:-8.19.21}"
ENGINES_CACHE="${AUDITFWD_ENGINES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/auditfwd-engines}"
ENGINES_TIMEOUT="${AUDITFWD_ENGINES_TIMEOUT:-240}"
ENGINES_HEAP="${AUDITFWD_ENGINES_HEAP:-512m}"

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# engine_settings ENGINE: sets ENGINE_VERSION, ENGINE_GROUP, ENGINE_MIN_JAVA, ENGINE_BIN,
# ENGINE_CONF_VAR (the variable naming the config directory), ENGINE_TMP_VAR, ENGINE_JAVA_VAR.
engine_settings() {
    case "$1" in
        opensearch)
            ENGINE_VERSION="$OPENSEARCH_VERSION"
            ENGINE_GROUP="org.opensearch.distribution.integ-test-zip"
            # OpenSearch 3 is built for Java 21.
            case "$ENGINE_VERSION" in 2.*) ENGINE_MIN_JAVA=17 ;; *) ENGINE_MIN_JAVA=21 ;; esac
            ENGINE_BIN=opensearch
            ENGINE_CONF_VAR=OPENSEARCH_PATH_CONF
            ENGINE_TMP_VAR=OPENSEARCH_TMPDIR
            ENGINE_JAVA_VAR=OPENSEARCH_JAVA_HOME
            ;;
        elasticsearch)
            ENGINE_VERSION="$ELASTICSEARCH_VERSION"
            ENGINE_GROUP="org.elasticsearch.distribution.integ-test-zip"
            case "$ENGINE_VERSION" in 8.*) ENGINE_MIN_JAVA=17 ;; *) ENGINE_MIN_JAVA=21 ;; esac
            ENGINE_BIN=elasticsearch
            ENGINE_CONF_VAR=ES_PATH_CONF
            ENGINE_TMP_VAR=ES_TMPDIR
            ENGINE_JAVA_VAR=ES_JAVA_HOME
            ;;
        *)
            die "unknown engine '$1' (opensearch or elasticsearch)"
            ;;
    esac
}

# state_dir ENGINE [NAME]: where a running node keeps its pid, url and run directory.
state_dir() {
    echo "$ENGINES_CACHE/run/${2:-$1}"
}
