#!/usr/bin/env bash
# Fuzzes Berth's HTTP API with schemathesis (PyPI), driven by Berth's own
# OpenAPI document (GET /api/openapi.json): every operation, with valid and
# invalid inputs, against a live daemon with an admin session. A run fails
# on any 5xx, any answer whose status, content type, headers or body the
# document does not describe, and on a crash or hang of the daemon.
#
# Usage: scripts/ci/schemathesis.sh   (from .ci/run; runs anywhere as root)
#   BERTH_FUZZ_SECONDS   time budget of schemathesis itself (default 150)
#   BERTH_FUZZ_EXAMPLES  most generated cases per operation (default 25)
#   BERTH_FUZZ_SEED      a seed to replay a run (default: random, printed)
#
# Isolation: the daemon and schemathesis run in a network namespace of
# their own with only a loopback interface (unshare -n). The fuzzer sends
# arbitrary URLs in endpoint registrations, registry entries and stack
# repositories; in here they can reach nothing but this namespace's
# loopback, so no generated address is ever contacted.
#
# What is fuzzed, and what is not:
# - The Docker backend is Berth's mock engine (berth-mock-docker) on a unix
#   socket, registered as endpoint 1 and as --docker-socket (the URL an
#   endpoint created without one gets), so endpoint, snapshot, fan-out and
#   stack routes have a Docker host to talk to.
# - Excluded, because they end the fuzzer's own session, after which every
#   later case could only test the 401 path:
#     POST /api/auth/logout           revokes the bearer token it is sent
#   (Changing the admin's own password or role needs the current password
#   or is refused for the last admin, and user 1 cannot be deleted, so
#   those operations stay in.)
# - Excluded, because they are not Berth's API but a pass-through to
#   Docker's, whose answers the document cannot describe field by field:
#     /api/endpoints/{id}/docker/{path}
#   and the WebSocket terminals (an upgrade, not a request/response).
set -euo pipefail

cd "$(dirname "$0")/../.."
repo=$PWD
budget=${BERTH_FUZZ_SECONDS:-150}
examples=${BERTH_FUZZ_EXAMPLES:-25}
seed=${BERTH_FUZZ_SEED:-$RANDOM$RANDOM}

if [[ -z ${BERTH_FUZZ_INSIDE:-} ]]; then
    command -v st >/dev/null 2>&1 || { echo "schemathesis ('st') is not installed" >&2; exit 1; }
    # Built outside the namespace (cargo may want the registry).
    cargo build --locked --quiet -p berth -p berth-testkit --bin berth --bin berth-mock-docker
    if ! unshare -n true 2>/dev/null; then
        echo "cannot create a network namespace (unshare -n): the fuzzer must not reach the network" >&2
        exit 1
    fi
    exec env BERTH_FUZZ_INSIDE=1 unshare -n "$0" "$@"
fi

ip link set lo up
target=${CARGO_TARGET_DIR:-$repo/target}/debug
work=$(mktemp -d /tmp/berth-fuzz.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=9000
base=http://127.0.0.1:$port
sock=$work/docker.sock
"$target/berth-mock-docker" --unix "$sock" >"$work/mock.log" 2>&1 &
pids+=($!)
"$target/berth" --bind "127.0.0.1:$port" --bind-https off --data "$work/data" --bcrypt-cost 4 \
    --docker-socket "unix://$sock" --log-level warn >"$work/berth.log" 2>&1 &
berth_pid=$!
pids+=("$berth_pid")
for _ in $(seq 1 100); do
    curl -fsS --max-time 2 "$base/api/status" >/dev/null 2>&1 && [[ -S $sock ]] && break
    sleep 0.1
done
curl -fsS --max-time 5 "$base/api/status" >/dev/null

# The admin, a session, room for many logins, and the mock as endpoint 1.
password=fuzzing-admin-password
curl -fsS --max-time 10 -H 'Content-Type: application/json' \
    -d "{\"Username\":\"admin\",\"Password\":\"$password\"}" "$base/api/users/admin/init" >/dev/null
jwt=$(curl -fsS --max-time 10 -H 'Content-Type: application/json' \
    -d "{\"Username\":\"admin\",\"Password\":\"$password\"}" "$base/api/auth" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["jwt"])')
auth="Authorization: Bearer $jwt"
curl -fsS --max-time 10 -X PUT -H "$auth" -H 'Content-Type: application/json' \
    -d '{"LoginRateLimit":{"Burst":100000,"PerSecond":10000}}' "$base/api/settings" >/dev/null
curl -fsS --max-time 10 -H "$auth" -F Name=mock -F EndpointCreationType=1 -F "URL=unix://$sock" \
    "$base/api/endpoints" >/dev/null

echo "schemathesis $(st --version 2>&1 | tail -n1), seed $seed, $examples cases per operation, ${budget} s"
started=$SECONDS
status=0
# schemathesis keeps a cache in its working directory: the scratch one,
# not the repository.
cd "$work"
timeout --kill-after=10 $((budget + 60)) st --config-file "$repo/scripts/ci/schemathesis.toml" run "$base/api/openapi.json" \
    --header "$auth" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method \
    --phases coverage,fuzzing \
    --max-examples "$examples" \
    --max-time "$budget" \
    --seed "$seed" \
    --workers 2 \
    --request-timeout 30 \
    --exclude-path-regex '^/api/endpoints/\{id\}/docker/|^/api/websocket/' \
    --exclude-path /api/auth/logout \
    --no-color 2>&1 | tee "$work/st.log" || status=$?

# The figures, from schemathesis's summary.
operations=$(sed -n 's/^ *Tested: *\([0-9]*\).*/\1/p' "$work/st.log" | tail -n1)
cases=$(sed -n 's/^ *\([0-9]*\) generated.*/\1/p' "$work/st.log" | tail -n1)
echo "schemathesis: ${operations:-?} operations, ${cases:-?} cases, $((SECONDS - started)) s, seed $seed"
if ! kill -0 "$berth_pid" 2>/dev/null; then
    echo "berth died during the run" >&2
    tail -n 50 "$work/berth.log" >&2
    exit 1
fi
if ! curl -fsS --max-time 5 "$base/api/status" >/dev/null; then
    echo "berth no longer answers after the run" >&2
    exit 1
fi
if ((status != 0)); then
    echo "schemathesis failed (exit $status); berth's log:" >&2
    tail -n 50 "$work/berth.log" >&2
fi
exit "$status"
