#!/usr/bin/env bash
# The container image test. Builds deploy/Dockerfile (making the base
# images first with deploy/make-base-image.sh where no registry is
# reachable), then, on a free loopback port:
#   - starts it exactly as the README says (socket bind-mounted, nothing
#     else), waits for /api/status and for Docker's HEALTHCHECK to say
#     healthy;
#   - runs the seeds' first steps through it with httpie: admin init,
#     login, local endpoint (Name=test-local EndpointType=1), container list
#     through /api/endpoints/1/docker (which must show this very container);
#   - checks the Docker CLI inside the image reaches the mounted engine;
#   - restarts the container: the admin, the endpoint and the old token
#     survive; stops it: SIGTERM drains and it exits 0 in time;
#   - starts a NEW container on the old one's /data volume: still there;
#   - removes what it made (containers, volume, the image tag) and checks
#     they are gone; two cache tags, berth-ci/cache:build and :runtime,
#     keep this run's layers for the next build on this machine, and older
#     runs' untagged layers are pruned.
# Prints SKIP with the reason when there is no Docker engine (a failure
# instead under BERTH_REQUIRE_DOCKER=1, which .ci/run sets).
#
# Usage: deploy/test-image.sh
# Environment: BERTH_TEST_IMAGE_TAG (default berth-ci/berth:test-PID),
#   BERTH_SKIP_BASE_IMAGES=1 to use whatever base images exist as they are.
set -euo pipefail
SCRIPT_NAME=test-image
# shellcheck source=deploy/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"

require_docker
require_httpie
command -v curl >/dev/null 2>&1 || die "curl not found"

TAG="${BERTH_TEST_IMAGE_TAG:-berth-ci/berth:test-$$}"
NAME="berth-ci-image-$$"
NAME2="$NAME-again"
VOL=
logdir="$(mktemp -d)"

cleanup() {
    docker rm -f "$NAME" "$NAME2" >/dev/null 2>&1 || true
    [[ -n $VOL ]] && docker volume rm "$VOL" >/dev/null 2>&1 || true
    # --no-prune: the tag goes, the build cache (its parent layers) stays.
    docker rmi --no-prune "$TAG" >/dev/null 2>&1 || true
    rm -rf "$logdir"
}
trap cleanup EXIT

show_logs() {
    local c
    for c in "$@"; do
        docker logs --tail 40 "$c" 2>&1 | sed "s/^/    [$c] /" >&2 || true
    done
}

# ---------------------------------------------------------------- build
if [[ ${BERTH_SKIP_BASE_IMAGES:-0} != 1 ]]; then
    t0=$SECONDS
    "$DEPLOY_DIR/make-base-image.sh"
    say "base images took $((SECONDS - t0)) s"
fi
t0=$SECONDS
say "docker build -f deploy/Dockerfile -t $TAG ."
if ! retry_build "$logdir/build.log" docker build --force-rm -f deploy/Dockerfile -t "$TAG" .; then
    tail -n 60 "$logdir/build.log" >&2
    die "docker build failed (last lines above)"
fi
build_s=$((SECONDS - t0))
grep -E 'Finished .release' "$logdir/build.log" | sed 's/\x1b\[[0-9;]*m//g; s/^/    /' || true
# Build cache for the next run on this machine: the build stage (compiled
# dependencies) and the final image keep one tag each, berth-ci/cache:build
# and berth-ci/cache:runtime; the chains of older runs, untagged now, are
# pruned at the end (untagged, this run's would be pruned with them).
t0=$SECONDS
docker build -q --force-rm -f deploy/Dockerfile --target build -t berth-ci/cache:build . >/dev/null
docker tag "$TAG" berth-ci/cache:runtime
say "cache tags set in $((SECONDS - t0)) s"
size_b="$(docker image inspect -f '{{.Size}}' "$TAG")"
say "image built in ${build_s} s: $TAG, $((size_b / 1000000)) MB"

# -------------------------------------------------------- image contents
inspect() { docker image inspect -f "$1" "$TAG"; }
check "EXPOSE 9000 and 9443" \
    bash -c '[[ "$1" == *9000/tcp* && "$1" == *9443/tcp* ]]' _ "$(inspect '{{json .Config.ExposedPorts}}')"
check "VOLUME /data" bash -c '[[ "$1" == *'"'"'"/data"'"'"'* ]]' _ "$(inspect '{{json .Config.Volumes}}')"
check "HEALTHCHECK runs berth-healthcheck" \
    bash -c '[[ "$1" == *berth-healthcheck* ]]' _ "$(inspect '{{json .Config.Healthcheck}}')"
check "data defaults to /data (BERTH_DATA)" \
    bash -c '[[ "$1" == *BERTH_DATA=/data* ]]' _ "$(inspect '{{json .Config.Env}}')"
check "no secret-looking variable in the image's environment" \
    bash -c '! grep -Eiq "secret|token|passw|jwt" <<<"$1"' _ "$(inspect '{{json .Config.Env}}')"
check "/data is empty in the image (no baked-in state or secret)" \
    bash -c '[[ -z "$(docker run --rm --network none --entrypoint ls "$1" -A /data)" ]]' _ "$TAG"
tools="$(docker run --rm --network none --entrypoint sh "$TAG" -c \
    'set -e; berth --version; docker --version; docker-compose version --short; git --version; tini --version
     test -s /etc/ssl/certs/ca-certificates.crt && echo ca-certificates ok' 2>&1)" || true
echo "$tools" | sed 's/^/    /'
check "image holds berth, docker, docker-compose, git, tini, CA certificates" \
    bash -c '[[ $(grep -c . <<<"$1") -ge 6 && "$1" == *"ca-certificates ok"* ]]' _ "$tools"

# ------------------------------------------------------ run as the README says
PORT="$(free_port)"
say "docker run -d -p 127.0.0.1:$PORT:9000 -v /var/run/docker.sock:/var/run/docker.sock $TAG"
docker run -d --name "$NAME" -p "127.0.0.1:$PORT:9000" \
    -v /var/run/docker.sock:/var/run/docker.sock "$TAG" >/dev/null
BASE="http://127.0.0.1:$PORT"
if ! wait_until 60 http_ok "$BASE/api/status"; then
    show_logs "$NAME"
    die "/api/status did not answer within 60 s"
fi
pass "/api/status answers on the published port"
health() { docker inspect -f '{{.State.Health.Status}}' "$1"; }
t0=$SECONDS
if wait_until 90 bash -c '[[ $(docker inspect -f "{{.State.Health.Status}}" "$1") == healthy ]]' _ "$NAME"; then
    pass "HEALTHCHECK reports healthy (after $((SECONDS - t0)) s)"
else
    fail "HEALTHCHECK reports $(health "$NAME"), not healthy"
    docker inspect -f '{{json .State.Health}}' "$NAME" >&2 || true
fi

# --------------------------------------------------- the seeds' first steps
seed_first_steps "$PORT" "in the container"
check "the local endpoint is endpoint 1, as the seeds use it" test "$EP" = 1
out="$(h GET ":$PORT/api/endpoints/1/docker/containers/json" "Authorization: Bearer $JWT" all==true 2>&1)" || true
check "container list through the endpoint shows this container (/$NAME)" \
    bash -c 'json "[n for c in d for n in c[\"Names\"]]" <<<"$1" | grep -q "\"/$2\""' _ "$out" "$NAME"
out="$(docker exec "$NAME" docker version --format '{{.Server.Version}}' 2>&1)" || true
check "the Docker CLI inside the image reaches the mounted engine ($out)" \
    bash -c '[[ -n "$1" && "$1" != *rror* ]]' _ "$out"

# ------------------------------------------------------------- restart
after_restart_checks() {
    local label=$1 c=$2
    if ! wait_until 60 http_ok "$BASE/api/status"; then
        show_logs "$c"
        fail "$label: /api/status did not answer within 60 s"
        return
    fi
    local o
    o="$(h GET ":$PORT/api/endpoints" "Authorization: Bearer $JWT" 2>&1)" || true
    check "$label: the old token is still valid and endpoint test-local is there" \
        bash -c 'json "[e[\"Name\"] for e in d]" <<<"$1" | grep -q "\"test-local\""' _ "$o"
    o="$(h POST ":$PORT/api/auth" Username="admin" Password="adminpassword" 2>&1)" || true
    check "$label: admin logs in with the same password" bash -c 'json "d[\"jwt\"]" <<<"$1" >/dev/null' _ "$o"
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        -d '{"Username":"admin","Password":"otherpassword1"}' "$BASE/api/users/admin/init")"
    check "$label: admin init is refused now (409, got $code)" test "$code" = 409
    o="$(h GET ":$PORT/api/endpoints/1/docker/containers/json" "Authorization: Bearer $JWT" all==true 2>&1)" || true
    check "$label: container list through endpoint 1 still works" \
        bash -c 'json "len(d)" <<<"$1" | grep -qE "^[1-9]"' _ "$o"
}

say "docker restart $NAME"
docker restart -t 35 "$NAME" >/dev/null
after_restart_checks "after restart" "$NAME"

t0=$SECONDS
docker stop -t 35 "$NAME" >/dev/null
stop_s=$((SECONDS - t0))
code="$(docker inspect -f '{{.State.ExitCode}}' "$NAME")"
check "docker stop: SIGTERM drains and Berth exits 0 (exit $code after ${stop_s} s, limit 35 s)" \
    bash -c '[[ $1 == 0 && $2 -lt 30 ]]' _ "$code" "$stop_s"

VOL="$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Name}}{{end}}{{end}}' "$NAME")"
check "the container's /data is a volume ($VOL)" test -n "$VOL"
docker rm "$NAME" >/dev/null
say "new container $NAME2 on volume $VOL"
docker run -d --name "$NAME2" -p "127.0.0.1:$PORT:9000" -v "$VOL:/data" \
    -v /var/run/docker.sock:/var/run/docker.sock "$TAG" >/dev/null
after_restart_checks "new container, same volume" "$NAME2"

# -------------------------------------------------------------- cleanup
cleanup
trap - EXIT
check "containers removed" bash -c '! docker inspect "$1" "$2" >/dev/null 2>&1' _ "$NAME" "$NAME2"
check "volume removed" bash -c '! docker volume inspect "$1" >/dev/null 2>&1' _ "$VOL"
check "image tag removed" bash -c '! docker image inspect "$1" >/dev/null 2>&1' _ "$TAG"
# Older runs' build-stage and final-image chains, dangling now that the
# cache tags moved on. (The small skeleton and docker-cli stages stay: they
# are the same from run to run.)
docker image prune -f --filter label=org.berth.base-image=host-toolchain-vendored >/dev/null 2>&1 || true
docker image prune -f --filter label=org.opencontainers.image.title=berth >/dev/null 2>&1 || true
say "image size $((size_b / 1000000)) MB, build ${build_s} s"
summary
