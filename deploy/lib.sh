# Shared helpers of the deploy/ scripts. Source it; do not run it.
# shellcheck shell=bash

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$DEPLOY_DIR/.." && pwd)"
: "${SCRIPT_NAME:=$(basename "$0" .sh)}"

passed=0
failed=0

say() { echo "$SCRIPT_NAME: $*"; }
die() {
    echo "$SCRIPT_NAME: FAIL: $*" >&2
    exit 1
}
pass() {
    passed=$((passed + 1))
    echo "  ok   $*"
}
fail() {
    failed=$((failed + 1))
    echo "  FAIL $*" >&2
}
# check DESCRIPTION COMMAND...: runs the command, records ok/FAIL.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
# The closing line: "NAME: N passed, N failed"; exits 1 on any failure.
summary() {
    echo "$SCRIPT_NAME: $passed passed, $failed failed"
    ((failed == 0))
}

# skip REASON: a missing prerequisite. With BERTH_REQUIRE_DOCKER=1 (set by
# .ci/run when an engine answers) a missing engine is a failure instead.
skip() {
    echo "SKIP $SCRIPT_NAME: $*"
    exit 0
}

docker_answers() {
    command -v docker >/dev/null 2>&1 && docker version >/dev/null 2>&1
}

require_docker() {
    if ! command -v docker >/dev/null 2>&1; then
        [[ ${BERTH_REQUIRE_DOCKER:-0} == 1 ]] && die "no docker CLI, and BERTH_REQUIRE_DOCKER=1"
        skip "no docker CLI on PATH"
    fi
    if ! docker version >/dev/null 2>&1; then
        [[ ${BERTH_REQUIRE_DOCKER:-0} == 1 ]] && die "the Docker engine does not answer, and BERTH_REQUIRE_DOCKER=1"
        skip "the Docker engine does not answer at ${DOCKER_HOST:-/var/run/docker.sock}"
    fi
}

# require_compose: docker-compose and an engine, else SKIP (or a failure
# under BERTH_REQUIRE_DOCKER=1).
require_compose() {
    require_docker
    if ! command -v docker-compose >/dev/null 2>&1; then
        [[ ${BERTH_REQUIRE_DOCKER:-0} == 1 ]] && die "docker-compose not found"
        skip "docker-compose not found"
    fi
}

# retry_build LOG COMMAND...: runs a build with its output in LOG, once more
# when it failed with Docker 20.10's "layer does not exist" (its legacy
# builder has been seen to fail so on a cache hit right after a prune).
retry_build() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 && return 0
    grep -q "layer does not exist" "$log" || return 1
    say "once more: layer does not exist"
    "$@" >"$log" 2>&1
}

# build_or_die LOG WHAT COMMAND...: retry_build, or the log's last lines and
# a failure naming WHAT.
build_or_die() {
    local log=$1 what=$2
    shift 2
    retry_build "$log" "$@" && return 0
    tail -n 40 "$log" >&2
    die "$what failed"
}

# base_images: deploy/make-base-image.sh, unless BERTH_SKIP_BASE_IMAGES=1
# (.ci/run makes them once, in a section of their own).
base_images() {
    [[ ${BERTH_SKIP_BASE_IMAGES:-0} == 1 ]] || "$DEPLOY_DIR/make-base-image.sh" >/dev/null
}

# compose_up LOG: the calling script's `dc up -d`, or its output and a failure.
compose_up() {
    dc up -d >"$1" 2>&1 && return 0
    cat "$1" >&2
    die "docker-compose up -d failed"
}

# h: httpie exactly as in the seeds; --ignore-stdin because CI has no terminal.
h() { http --check-status --ignore-stdin --timeout 30 "$@"; }

# seed_first_steps PORT WHERE: the seeds' first steps on 127.0.0.1:PORT
# (admin init, login, the local endpoint "test-local"), each checked; sets
# JWT and EP (the endpoint's id).
seed_first_steps() {
    local port=$1 where=$2 out
    out="$(h POST ":$port/api/users/admin/init" Username="admin" Password="adminpassword" 2>&1)" || true
    check "admin init (POST /api/users/admin/init) $where" \
        bash -c '[[ $(json "d[\"Username\"]" <<<"$1") == admin ]]' _ "$out"
    out="$(h POST ":$port/api/auth" Username="admin" Password="adminpassword" 2>&1)" || true
    JWT="$(json 'd["jwt"]' <<<"$out" 2>/dev/null || true)"
    check "login (POST /api/auth) $where returns a jwt" test -n "$JWT"
    out="$(h --form POST ":$port/api/endpoints" "Authorization: Bearer $JWT" Name="test-local" EndpointType=1 2>&1)" || true
    EP="$(json 'd["Id"] if d["Name"] == "test-local" else ""' <<<"$out" 2>/dev/null || true)"
    check "local endpoint created (POST /api/endpoints Name=test-local EndpointType=1) $where: Id ${EP:-none}" \
        test -n "$EP"
}

require_httpie() {
    command -v http >/dev/null 2>&1 || die "httpie ('http') not found: python3 -m pip install httpie (.ci/run does)"
}

# A TCP port free on 127.0.0.1 right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_until SECONDS COMMAND...: polls every 0.5 s until the command succeeds.
wait_until() {
    local limit=$1 t0=$SECONDS
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS - t0 >= limit)) && return 1
        sleep 0.5
    done
}

# http_ok URL: the URL answers 2xx.
http_ok() { curl -fsS --max-time 5 -o /dev/null "$1"; }

# json EXPR: evaluates a Python expression over the JSON document on stdin
# (bound to `d`) and prints the result (JSON for lists and dicts).
json() {
    python3 -c '
import json, sys
d = json.load(sys.stdin)
v = eval(sys.argv[1])
print(json.dumps(v) if isinstance(v, (list, dict)) else v)
' "$1"
}
export -f json
