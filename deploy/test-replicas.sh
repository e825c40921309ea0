#!/usr/bin/env bash
# The replicas test: deploy/replicas/docker-compose.yml (PostgreSQL from
# Debian's package, two Berth replicas on it, HAProxy in front) brought up
# and down once, as project "berthrep", HAProxy on a free loopback port, as
# the README's "Run several replicas" says:
#   - a store password file made as the compose file's comment says
#     (removed at the end; .gitignore keeps it out of the repository);
#   - build (Berth's image from deploy/Dockerfile, cached layers after
#     deploy/test-image.sh; the PostgreSQL and HAProxy images from
#     debian:bookworm-slim, made by deploy/make-base-image.sh) and up -d;
#   - the database and both replicas healthy, both behind HAProxy;
#   - the seeds' first steps through HAProxy (admin init, login, the local
#     endpoint on the mounted engine, a container list through it);
#   - one replica stopped: the other serves the same token and endpoint,
#     and a write made through it (an endpoint) is there when the first
#     comes back and the second is stopped in its turn;
#   - /api/status of each replica names the PostgreSQL backend and itself;
#   - no replica's log holds the store password;
#   - down -v: containers, volumes and network gone, image tags removed.
# Prints SKIP with the reason without docker-compose or a Docker engine (a
# failure instead under BERTH_REQUIRE_DOCKER=1, which .ci/run sets).
#
# Usage: deploy/test-replicas.sh
set -euo pipefail
SCRIPT_NAME=test-replicas
# shellcheck source=deploy/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"

require_compose
require_httpie

PROJECT=berthrep
COMPOSE=deploy/replicas/docker-compose.yml
PASSWORD_FILE=deploy/replicas/store-password
[[ -e $PASSWORD_FILE ]] && die "$PASSWORD_FILE exists: a real deployment's password? Not touching it"
export BERTH_IMAGE="berth-ci/berth:replicas-$$"
PORT="$(free_port)"
export BERTH_HTTP_PUBLISH="127.0.0.1:$PORT"
dc() { docker-compose -f "$COMPOSE" -p "$PROJECT" "$@"; }
log="$(mktemp)"

cleanup() {
    dc down -v --remove-orphans >/dev/null 2>&1 || true
    docker rmi --no-prune "$BERTH_IMAGE" berth-postgres:15 berth-haproxy:latest >/dev/null 2>&1 || true
    rm -f "$PASSWORD_FILE" "$log"
}
trap cleanup EXIT

# As the compose file's comment says (a password only root can read).
(umask 077 && openssl rand -hex 24 >"$PASSWORD_FILE")
STORE_PASSWORD="$(cat "$PASSWORD_FILE")"
check "docker-compose config" bash -c 'docker-compose -f "$1" -p "$2" config -q' _ "$COMPOSE" "$PROJECT"

base_images
t0=$SECONDS
build_or_die "$log" "docker build of Berth's image" docker build --force-rm -f deploy/Dockerfile -t "$BERTH_IMAGE" .
build_or_die "$log" "docker-compose build (PostgreSQL, HAProxy)" dc build
say "images built in $((SECONDS - t0)) s"

t0=$SECONDS
compose_up "$log"
healthy() { [[ $(docker inspect -f '{{.State.Health.Status}}' "$(dc ps -q "$1")") == healthy ]]; }
for s in postgres berth-a berth-b; do
    if wait_until 120 healthy "$s"; then
        pass "$s healthy after $((SECONDS - t0)) s"
    else
        fail "$s not healthy: $(docker inspect -f '{{json .State.Health}}' "$(dc ps -q "$s")" 2>&1)"
        dc logs --tail 30 "$s" >&2 || true
    fi
done
BASE="http://127.0.0.1:$PORT"
if ! wait_until 60 http_ok "$BASE/api/status"; then
    dc logs --tail 30 >&2 || true
    die "HAProxy did not answer /api/status on $BERTH_HTTP_PUBLISH within 60 s"
fi
pass "HAProxy answers /api/status on $BERTH_HTTP_PUBLISH"

# Each replica's own /api/status, from inside its container (the image has
# bash, not curl; its port is on the compose network only).
replica_status() {
    docker exec "$(dc ps -q "$1")" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9000 &&
        printf "GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" >&3 && cat <&3' |
        sed -n '/^\r$/,$p' | tail -n +2
}
for s in berth-a berth-b; do
    st="$(replica_status "$s" 2>&1)" || true
    got="$(json 'd["Store"]["Backend"] + " " + d["Store"]["Replica"]' <<<"$st" 2>&1)" || true
    check "$s: /api/status names the PostgreSQL store and the replica ($got)" test "$got" = "postgres $s"
done

seed_first_steps "$PORT" "through HAProxy"

# With one replica stopped, HAProxy takes it out of the rotation (3 failed
# checks 1 s apart): the other must serve the token, the endpoint and the
# write made through the first.
only() {
    local up=$1 down=$2
    dc start "$up" >/dev/null 2>&1
    wait_until 60 healthy "$up" || fail "$up not healthy again"
    dc stop -t 35 "$down" >/dev/null 2>&1
    # Until HAProxy has marked it down (3 failed checks 1 s apart), a
    # request may still go to it: wait for six answers in a row.
    wait_until 30 answers_in_a_row 6 || fail "HAProxy still sends requests to the stopped $down"
}
answers_in_a_row() {
    local i
    for ((i = 0; i < $1; i++)); do http_ok "$BASE/api/status" || return 1; done
}

only berth-b berth-a
out="$(h GET ":$PORT/api/endpoints/$EP/docker/containers/json" "Authorization: Bearer $JWT" all==true 2>&1)" || true
check "berth-a stopped: berth-b serves the same token and endpoint (container list)" \
    bash -c 'json "len(d)" <<<"$1" | grep -qE "^[1-9]"' _ "$out"
out="$(h --form POST ":$PORT/api/endpoints" "Authorization: Bearer $JWT" Name="written-on-b" EndpointType=1 2>&1)" || true
check "berth-a stopped: an endpoint written through berth-b" \
    bash -c '[[ $(json "d[\"Name\"]" <<<"$1") == written-on-b ]]' _ "$out"
only berth-a berth-b
out="$(h GET ":$PORT/api/endpoints" "Authorization: Bearer $JWT" 2>&1)" || true
check "berth-b stopped: berth-a has the endpoint written through berth-b" \
    bash -c 'json "sorted(e[\"Name\"] for e in d)" <<<"$1" | grep -q "\"written-on-b\""' _ "$out"
out="$(h GET ":$PORT/api/endpoints/$EP/docker/_ping" "Authorization: Bearer $JWT" 2>&1)" || true
check "berth-b stopped: berth-a proxies to the engine (_ping: $out)" test "$out" = OK
dc start berth-b >/dev/null 2>&1

logs="$(dc logs --no-color berth-a berth-b postgres 2>&1)"
check "no log line of the replicas or the database holds the store password" \
    bash -c '[[ $1 != *"$2"* ]]' _ "$logs" "$STORE_PASSWORD"

dc down -v >"$log" 2>&1 || { cat "$log" >&2; fail "docker-compose down -v"; }
check "down -v: containers removed" bash -c '[[ -z $(docker ps -aq --filter label=com.docker.compose.project=berthrep) ]]'
check "down -v: volumes removed" \
    bash -c '[[ -z $(docker volume ls -q --filter label=com.docker.compose.project=berthrep) ]]'
check "down -v: network removed" bash -c '! docker network inspect berthrep_default >/dev/null 2>&1'
cleanup
trap - EXIT
check "store password file removed" test ! -e "$PASSWORD_FILE"
summary
