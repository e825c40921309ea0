#!/usr/bin/env bash
# The compose test: deploy/docker-compose.yml brought up and down once, as
# project "berthci" on free loopback ports.
#   docker-compose config; up -d (builds the image: cached layers after
#   deploy/test-image.sh); wait until the container is healthy; the API
#   answers; /metrics refused on the public port, served on the in-container
#   metrics listener; down -v; container, network and volume gone; the image
#   tag it built removed.
# Prints SKIP with the reason without docker-compose or a Docker engine (a
# failure instead under BERTH_REQUIRE_DOCKER=1, which .ci/run sets).
#
# Usage: deploy/test-compose.sh
set -euo pipefail
SCRIPT_NAME=test-compose
# shellcheck source=deploy/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"

require_compose

export COMPOSE_PROJECT_NAME=berthci
export BERTH_IMAGE="berth-ci/berth:compose-$$"
PORT="$(free_port)"
SPORT="$(free_port)"
export BERTH_HTTP_PUBLISH="127.0.0.1:$PORT"
export BERTH_HTTPS_PUBLISH="127.0.0.1:$SPORT"
dc() { docker-compose -f deploy/docker-compose.yml -p berthci "$@"; }
log="$(mktemp)"

cleanup() {
    dc down -v --remove-orphans >/dev/null 2>&1 || true
    docker rmi --no-prune "$BERTH_IMAGE" >/dev/null 2>&1 || true
    rm -f "$log"
}
trap cleanup EXIT

check "docker-compose config" bash -c 'docker-compose -f deploy/docker-compose.yml -p berthci config -q'

base_images
t0=$SECONDS
build_or_die "$log" "docker-compose build" dc build
say "docker-compose build took $((SECONDS - t0)) s"
t0=$SECONDS
compose_up "$log"
cid="$(dc ps -q berth)"
check "docker-compose -p berthci up -d started the berth service" test -n "$cid"
if wait_until 90 bash -c '[[ $(docker inspect -f "{{.State.Health.Status}}" "$1") == healthy ]]' _ "$cid"; then
    pass "service healthy after $((SECONDS - t0)) s"
else
    fail "service not healthy: $(docker inspect -f '{{json .State.Health}}' "$cid")"
    dc logs --tail 40 >&2 || true
fi
check "restart policy unless-stopped" \
    test "$(docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' "$cid")" = unless-stopped
check "/api/status answers on $BERTH_HTTP_PUBLISH" http_ok "http://127.0.0.1:$PORT/api/status"
code="$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$SPORT/api/status")"
check "HTTPS (self-signed) answers on $BERTH_HTTPS_PUBLISH ($code)" test "$code" = 200
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/metrics")"
check "/metrics on the public port needs a credential ($code)" test "$code" = 401
status="$(docker exec "$cid" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9099 &&
    printf "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" >&3 && head -n1 <&3' 2>&1 || true)"
check "metrics listener 127.0.0.1:9099 serves /metrics inside the container (${status%$'\r'})" \
    bash -c '[[ $1 == "HTTP/1.1 200"* ]]' _ "$status"
vol="$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Name}}{{end}}{{end}}' "$cid")"
check "/data is the named volume berthci_berth_data ($vol)" test "$vol" = berthci_berth_data

dc down -v >"$log" 2>&1 || { cat "$log" >&2; fail "docker-compose down -v"; }
check "down -v: container removed" bash -c '! docker inspect "$1" >/dev/null 2>&1' _ "$cid"
check "down -v: volume removed" bash -c '! docker volume inspect berthci_berth_data >/dev/null 2>&1'
check "down -v: network removed" bash -c '! docker network inspect berthci_default >/dev/null 2>&1'
cleanup
trap - EXIT
check "image tag $BERTH_IMAGE removed" bash -c '! docker image inspect "$1" >/dev/null 2>&1' _ "$BERTH_IMAGE"
summary
