#!/usr/bin/env bash
# The systemd unit, for real: deploy/berth.service running under systemd
# (PID 1 of a throwaway container made from debian:bookworm-slim plus
# Debian's systemd, docker-compose and git, and the Docker CLI), installed
# with the README's commands, every hardening setting in force.
#   - the service starts as user berth (no capabilities, NoNewPrivileges,
#     a seccomp filter), state in /var/lib/berth (0700, owned by berth);
#   - Compose answers under the sandbox (/api/status "Compose" not null);
#   - the seeds' first steps through it, the local endpoint being the
#     host's bind-mounted Docker socket, reached through the docker group;
#   - `systemctl stop` with a tunnel open: SIGTERM, the drain waits for it
#     drain_timeout (30 s), exit 0, Result=success, within TimeoutStopSec;
#     state survives a start; a SIGKILL of the main process is restarted by
#     Restart=on-failure.
# Needs a Docker engine that runs a container with CAP_SYS_ADMIN and no
# seccomp profile (systemd as PID 1); prints SKIP with the reason
# otherwise (a failure under BERTH_REQUIRE_DOCKER=1 only when no engine
# answers at all).
#
# Usage: deploy/test-systemd.sh
set -euo pipefail
SCRIPT_NAME=test-systemd
# shellcheck source=deploy/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"

require_docker
require_httpie
[[ -S /var/run/docker.sock ]] || skip "no /var/run/docker.sock to hand to the service"

BERTH="${BERTH_BIN:-}"
if [[ -z $BERTH ]]; then
    cargo build --locked --quiet --bin berth
    BERTH="$REPO_DIR/target/debug/berth"
fi
if [[ ${BERTH_SKIP_BASE_IMAGES:-0} != 1 ]]; then
    "$DEPLOY_DIR/make-base-image.sh" debian >/dev/null
fi

TAG="berth-ci/systemd:test-$$"
NAME="berth-ci-systemd-$$"
ctx="$(mktemp -d)"
cleanup() {
    # SIGRTMIN+3 (docker stop) lets systemd shut down and remove its cgroups.
    docker stop -t 20 "$NAME" >/dev/null 2>&1 || true
    docker rm -f -v "$NAME" >/dev/null 2>&1 || true
    docker rmi "$TAG" >/dev/null 2>&1 || true
    rm -rf "$ctx"
}
trap cleanup EXIT

mkdir -p "$ctx/base" "$ctx/test/deploy"
cp "$BERTH" "$ctx/test/berth"
cp deploy/berth.service deploy/berth-sysusers.conf deploy/berth.toml "$ctx/test/deploy/"
gid="$(stat -c %g /var/run/docker.sock)"
# Debian with systemd and the stack tools: kept between runs under a tag
# named after its recipe (only the layers above it are removed at the end).
cat >"$ctx/base/Dockerfile" <<EOF
FROM debian:bookworm-slim
RUN apt-get update \\
 && apt-get install -y --no-install-recommends systemd docker-compose git ca-certificates \\
 && cd /tmp && apt-get download docker.io \\
 && dpkg-deb --fsys-tarfile docker.io_*.deb | tar -x ./usr/bin/docker && mv usr/bin/docker /usr/bin/docker \\
 && rm -rf /tmp/* /var/lib/apt/lists/* \\
 && (getent group docker || groupadd -g "$gid" docker) \\
 && systemctl mask getty.target console-getty.service systemd-logind.service systemd-udevd.service \\
      systemd-udev-trigger.service systemd-resolved.service systemd-timesyncd.service
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
EOF
BASE="berth-ci/systemd-base:$({ cat "$ctx/base/Dockerfile"; docker image inspect -f '{{.Id}}' debian:bookworm-slim; } |
    sha256sum | cut -c1-12)"
t0=$SECONDS
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    if ! docker build -q --force-rm -t "$BASE" "$ctx/base" >"$ctx/build.log" 2>&1; then
        tail -n 30 "$ctx/build.log" >&2
        die "building $BASE failed"
    fi
fi
# The install steps are the README's (systemd section), as RUN lines.
cat >"$ctx/test/Dockerfile" <<EOF
FROM $BASE
COPY berth /target/release/berth
COPY deploy /deploy
RUN install -m 0755 target/release/berth /usr/local/bin/berth \\
 && install -D -m 0644 deploy/berth-sysusers.conf /usr/lib/sysusers.d/berth.conf \\
 && systemd-sysusers \\
 && install -D -m 0640 -g berth deploy/berth.toml /etc/berth/berth.toml \\
 && install -m 0644 deploy/berth.service /etc/systemd/system/berth.service \\
 && systemctl enable berth \\
 && rm -rf /target /deploy
EOF
if ! docker build -q --force-rm -t "$TAG" "$ctx/test" >"$ctx/build.log" 2>&1; then
    tail -n 30 "$ctx/build.log" >&2
    die "building the systemd test image failed"
fi
say "systemd test image built in $((SECONDS - t0)) s (on $BASE)"

PORT="$(free_port)"
if ! docker run -d --name "$NAME" --cap-add SYS_ADMIN --security-opt seccomp=unconfined \
    --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    -v /var/run/docker.sock:/var/run/docker.sock -p "127.0.0.1:$PORT:9000" "$TAG" >"$ctx/run.log" 2>&1; then
    skip "this engine cannot run systemd in a container: $(tail -n1 "$ctx/run.log")"
fi
sx() { docker exec "$NAME" "$@"; }
if ! wait_until 60 sx systemctl is-active --quiet berth; then
    state="$(sx systemctl is-system-running 2>&1 || true)"
    if [[ $state != running && $state != degraded ]]; then
        docker logs --tail 20 "$NAME" >&2 || true
        skip "systemd did not come up in the container (state: ${state:-none})"
    fi
    sx systemctl status berth --no-pager >&2 || true
    die "berth.service did not become active"
fi
pass "berth.service active under systemd $(sx systemctl --version | head -n1 | awk '{print $2}')"
wait_until 30 http_ok "http://127.0.0.1:$PORT/api/status" || {
    sx journalctl -u berth --no-pager -n 30 >&2 || true
    die "/api/status did not answer"
}
pass "/api/status answers"

pid="$(sx systemctl show -p MainPID --value berth)"
creds="$(sx bash -c "stat -c '%U' /proc/$pid; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/$pid/status | tr -s '\t ' ' '")"
check "runs as user berth" bash -c '[[ $(head -n1 <<<"$1") == berth ]]' _ "$creds"
check "no capabilities, NoNewPrivs, seccomp filter ($(tail -n3 <<<"$creds" | tr '\n' ' '))" \
    bash -c '[[ "$1" == *"CapEff: 0000000000000000"* && "$1" == *"NoNewPrivs: 1"* && "$1" == *"Seccomp: 2"* ]]' _ "$creds"
check "state in /var/lib/berth, 0700, owned by berth" \
    test "$(sx stat -c '%a %U' /var/lib/berth)" = "700 berth"
compose="$(curl -fsS "http://127.0.0.1:$PORT/api/status" | json 'd.get("Compose")' 2>&1 || true)"
check "Compose answers under the sandbox (/api/status Compose: $compose)" \
    bash -c '[[ -n $1 && $1 != None ]]' _ "$compose"

out="$(h POST ":$PORT/api/users/admin/init" Username="admin" Password="adminpassword" 2>&1)" || true
check "admin init" bash -c '[[ $(json "d[\"Username\"]" <<<"$1") == admin ]]' _ "$out"
JWT="$(h POST ":$PORT/api/auth" Username="admin" Password="adminpassword" 2>/dev/null | json 'd["jwt"]' 2>/dev/null || true)"
check "login" test -n "$JWT"
# Logins hash on threads of their own under SCHED_BATCH (policy 3, field 41
# of a thread's stat line) at nice 10 (field 19): the unit's system-call
# filter must allow it, and its limits must keep real-time policies out.
hashing="$(sx bash -c "for t in /proc/$pid/task/*; do [[ \$(cat \$t/comm) == berth-bcrypt-* ]] && awk '{print \$41 \"/\" \$19}' \$t/stat; done" | sort -u | tr '\n' ' ' || true)"
check "password hashing threads under SCHED_BATCH at nice 10 (policy/nice seen: ${hashing:-none})" test "$hashing" = "3/10 "
rtprio="$(sx awk '/Max realtime priority/ {print $4 "/" $5}' "/proc/$pid/limits" 2>&1 || true)"
check "no real-time priority allowed (RLIMIT_RTPRIO $rtprio)" test "$rtprio" = "0/0"
out="$(h --form POST ":$PORT/api/endpoints" "Authorization: Bearer $JWT" Name="test-local" EndpointType=1 2>&1)" || true
check "local endpoint (the Docker socket, through the docker group)" \
    bash -c '[[ $(json "d[\"Id\"]" <<<"$1") == 1 ]]' _ "$out"
out="$(h GET ":$PORT/api/endpoints/1/docker/containers/json" "Authorization: Bearer $JWT" all==true 2>&1)" || true
check "container list through the endpoint shows this container" \
    bash -c 'json "[n for c in d for n in c[\"Names\"]]" <<<"$1" | grep -q "\"/$2\""' _ "$out" "$NAME"

# Stop with a tunnel open (an attach to this very container, through
# Berth): the drain waits for it until drain_timeout (berth.toml: 30 s), then
# Berth exits 0, inside TimeoutStopSec.
limit="$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' deploy/berth.service)"
drain="$(sed -n 's/^drain_timeout = "\([0-9]*\)s"$/\1/p' deploy/berth.toml)"
python3 - "$PORT" "$JWT" "$NAME" >"$ctx/tunnel.log" 2>&1 <<'PY' &
import socket, sys, time
port, jwt, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port), timeout=90)
s.sendall(("POST /api/endpoints/1/docker/containers/%s/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\n"
           "Host: localhost\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
           "Content-Length: 0\r\n\r\n" % (name, jwt)).encode())
print(s.recv(4096).decode(errors="replace").splitlines()[0], flush=True)
t0 = time.time()
while s.recv(4096):  # until Berth closes it
    pass
print("closed after %.0f s" % (time.time() - t0), flush=True)
PY
tunnel=$!
wait_until 10 grep -q HTTP "$ctx/tunnel.log" || true
check "a tunnel is open ($(head -n1 "$ctx/tunnel.log"))" grep -q "HTTP/1.1 101" "$ctx/tunnel.log"
t0=$SECONDS
sx systemctl stop berth
took=$((SECONDS - t0))
wait "$tunnel" 2>/dev/null || true
res="$(sx systemctl show -p Result --value berth) $(sx systemctl show -p ExecMainStatus --value berth)"
check "systemctl stop with a tunnel open: drained ${took} s (drain_timeout ${drain} s), exit 0 inside TimeoutStopSec=${limit}s (Result, status: $res)" \
    bash -c '[[ $1 == "success 0" && $2 -ge $(($4 - 3)) && $2 -lt $3 ]]' _ "$res" "$took" "$limit" "$drain"
sx systemctl start berth
wait_until 30 http_ok "http://127.0.0.1:$PORT/api/status" || die "berth did not start again"
code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $JWT" "http://127.0.0.1:$PORT/api/endpoints/1")"
check "after a restart the token and endpoint are still valid ($code)" test "$code" = 200

old="$(sx systemctl show -p MainPID --value berth)"
sx bash -c "kill -KILL $old"
if wait_until 30 bash -c 'p=$(docker exec "$1" systemctl show -p MainPID --value berth); [[ $p != 0 && $p != "$2" ]] &&
    docker exec "$1" systemctl is-active --quiet berth' _ "$NAME" "$old"; then
    pass "Restart=on-failure: killed with SIGKILL, restarted (NRestarts=$(sx systemctl show -p NRestarts --value berth))"
else
    fail "not restarted after SIGKILL"
fi
wait_until 30 http_ok "http://127.0.0.1:$PORT/api/status" || fail "/api/status after the restart"

# Not the bare word "denied": the access log has a `denied=` field (the
# restricted-access rule that refused a request, empty otherwise).
warnings="$(sx journalctl -u berth --no-pager -o cat 2>/dev/null | grep -iE 'permission denied|access denied|not permitted|bad system call|EPERM' || true)"
check "no permission or system-call errors in the service's journal" test -z "$warnings"
[[ -z $warnings ]] || echo "$warnings" | sed 's/^/      /' >&2

cleanup
trap - EXIT
check "container and image removed" bash -c '! docker inspect "$1" >/dev/null 2>&1 && ! docker image inspect "$2" >/dev/null 2>&1' _ "$NAME" "$TAG"
summary
