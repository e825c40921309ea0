#!/usr/bin/env bash
# The Prometheus scrape test: a real Prometheus (Debian's `prometheus`
# package) scrapes a real Berth through deploy/prometheus.yml and
# deploy/alerts.yml, and the series users need are checked through
# Prometheus's own query API (/api/v1/query), not by reading /metrics.
#
#   - Berth (target/debug/berth unless BERTH_BIN) on free loopback ports,
#     temp data dir, --metrics-bind (the listener prometheus.yml scrapes)
#     and --metrics-auth on, health checks every 2 s;
#   - two mock Docker engines (target/debug/berth-mock-docker): endpoint 1
#     stays up, endpoint 2's engine is killed and its socket removed after
#     the endpoint is created, so it is a dead socket path;
#   - Prometheus with deploy/prometheus.yml (target and intervals templated
#     for the test: 1 s scrapes) and deploy/alerts.yml;
#   - traffic: admin init, logins (one with a wrong password), requests with
#     a bad and with no token, proxied GET /api/endpoints/1/docker/containers/json,
#     requests to the dead endpoint 2, a hijacked attach tunnel held open;
#   - checks: target up; API requests by route template and status (no raw
#     ids; proxied calls only in the proxy series);
#     latency histogram buckets and a quantile; auth failures by reason;
#     berth_endpoint_up 1 and 0; endpoints by status; proxied requests and
#     latency per endpoint; upstream connect failures; tunnels open 1 then
#     0; alert rules loaded and healthy, BerthEndpointDown pending for
#     endpoint 2; `promtool check metrics` silent on Berth's /metrics;
#     /metrics on the main port refused without a credential.
# Prints SKIP when prometheus/promtool are absent (a failure instead under
# BERTH_REQUIRE_DEPLOY_TOOLS=1, which .ci/run sets after installing them).
#
# Usage: deploy/test-prometheus.sh
set -euo pipefail
SCRIPT_NAME=test-prometheus
# shellcheck source=deploy/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"

for tool in prometheus promtool curl python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        [[ ${BERTH_REQUIRE_DEPLOY_TOOLS:-0} == 1 ]] && die "$tool not found (apt-get install prometheus curl)"
        skip "$tool not found (apt-get install prometheus)"
    fi
done

BERTH="${BERTH_BIN:-}"
MOCK="${BERTH_MOCK_DOCKER_BIN:-}"
if [[ -z $BERTH || -z $MOCK ]]; then
    # A no-op after `cargo test --workspace`, which builds both (the mock is
    # a binary of the berth-testkit crate).
    cargo build --locked --quiet -p berth -p berth-testkit --bin berth --bin berth-mock-docker
    BERTH="${BERTH:-$REPO_DIR/target/debug/berth}"
    MOCK="${MOCK:-$REPO_DIR/target/debug/berth-mock-docker}"
fi
[[ -x $BERTH && -x $MOCK ]] || die "missing $BERTH or $MOCK"

tmp="$(mktemp -d /tmp/berth-prom.XXXXXX)"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
dump_logs() {
    local f
    for f in "$tmp"/*.log; do
        [[ -f $f ]] && tail -n 30 "$f" | sed "s|^|    [$(basename "$f")] |" >&2
    done
}

# ------------------------------------------------------------- processes
"$MOCK" --unix "$tmp/docker-up.sock" >"$tmp/mock-up.log" 2>&1 &
pids+=($!)
"$MOCK" --unix "$tmp/docker-dying.sock" >"$tmp/mock-dying.log" 2>&1 &
mock_dying=$!
pids+=($mock_dying)
wait_until 20 test -S "$tmp/docker-up.sock" || { dump_logs; die "mock engine did not start"; }
wait_until 20 test -S "$tmp/docker-dying.sock" || { dump_logs; die "mock engine did not start"; }

PORT="$(free_port)"
MPORT="$(free_port)"
while [[ $MPORT == "$PORT" ]]; do MPORT="$(free_port)"; done
"$BERTH" --bind "127.0.0.1:$PORT" --bind-https off --data "$tmp/data" \
    --metrics-bind "127.0.0.1:$MPORT" --metrics-auth true \
    --health-interval 2s --health-timeout 1s --bcrypt-cost 4 \
    --log-level warn >"$tmp/berth.log" 2>&1 &
pids+=($!)
B="http://127.0.0.1:$PORT"
M="http://127.0.0.1:$MPORT/metrics"
wait_until 30 http_ok "$B/api/status" || { dump_logs; die "Berth did not answer /api/status"; }
wait_until 10 http_ok "$M" || { dump_logs; die "Berth's metrics listener did not answer"; }

PPORT="$(free_port)"
sed -e "s/127\.0\.0\.1:9099/127.0.0.1:$MPORT/" \
    -e 's/scrape_interval: 15s/scrape_interval: 1s/' \
    -e 's/evaluation_interval: 15s/evaluation_interval: 1s/' \
    deploy/prometheus.yml >"$tmp/prometheus.yml"
cp deploy/alerts.yml "$tmp/alerts.yml"
grep -q "127.0.0.1:$MPORT" "$tmp/prometheus.yml" || die "could not template the target into prometheus.yml"
check "promtool check config (templated deploy/prometheus.yml + alerts.yml)" \
    bash -c 'promtool check config "$1" >/dev/null' _ "$tmp/prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
    --web.listen-address="127.0.0.1:$PPORT" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
P="http://127.0.0.1:$PPORT"
wait_until 60 http_ok "$P/-/ready" || { dump_logs; die "Prometheus did not become ready"; }
say "berth :$PORT (metrics :$MPORT), prometheus :$PPORT, data in $tmp"

# --------------------------------------------------------------- traffic
jpost() { curl -sS -o "$tmp/out" -w '%{http_code}' -H 'Content-Type: application/json' "$@"; }
code="$(jpost -d '{"Username":"admin","Password":"adminpassword"}' "$B/api/users/admin/init")"
[[ $code == 200 ]] || die "admin init answered $code: $(cat "$tmp/out")"
for _ in 1 2 3; do
    code="$(jpost -d '{"Username":"admin","Password":"adminpassword"}' "$B/api/auth")"
    [[ $code == 200 ]] || die "login answered $code"
done
JWT="$(json 'd["jwt"]' <"$tmp/out")"
for _ in 1 2; do
    code="$(jpost -d '{"Username":"admin","Password":"wrong-password"}' "$B/api/auth")"
    [[ $code == 422 ]] || die "a wrong password answered $code, not 422"
done
auth=(-H "Authorization: Bearer $JWT")
curl -s -o /dev/null -H 'Authorization: Bearer not.a.jwt' "$B/api/endpoints"
curl -s -o /dev/null "$B/api/endpoints"
mkep() {
    curl -sS -o "$tmp/out" -w '%{http_code}' "${auth[@]}" \
        -F "Name=$1" -F EndpointType=1 -F "URL=unix://$2" "$B/api/endpoints"
}
code="$(mkep mock-up "$tmp/docker-up.sock")"
[[ $code == 200 ]] || die "creating endpoint 1 answered $code: $(cat "$tmp/out")"
[[ $(json 'd["Id"]' <"$tmp/out") == 1 ]] || die "endpoint 1 got another id"
code="$(mkep mock-dead "$tmp/docker-dying.sock")"
[[ $code == 200 ]] || die "creating endpoint 2 answered $code: $(cat "$tmp/out")"
[[ $(json 'd["Id"]' <"$tmp/out") == 2 ]] || die "endpoint 2 got another id"
# Endpoint 2's engine goes away: a dead socket path from now on.
kill "$mock_dying"
wait "$mock_dying" 2>/dev/null || true
rm -f "$tmp/docker-dying.sock"

for _ in $(seq 1 20); do
    code="$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$B/api/endpoints/1/docker/containers/json?all=1")"
    [[ $code == 200 ]] || die "GET /api/endpoints/1/docker/containers/json answered $code"
done
curl -s -o /dev/null "${auth[@]}" "$B/api/endpoints/1/docker/v1.41/version"
curl -s -o /dev/null "${auth[@]}" "$B/api/endpoints/1/docker/containers/0123456789ab/json"
dead_codes=""
for _ in $(seq 1 5); do
    dead_codes+="$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$B/api/endpoints/2/docker/containers/json") "
done
check "requests to the dead endpoint 2 fail with 5xx ($dead_codes)" bash -c '[[ ! "$1" =~ [^5\ ][0-9][0-9] && "$1" == 5* ]]' _ "$dead_codes"
code="$(curl -s -o /dev/null -w '%{http_code}' "$B/metrics")"
check "/metrics on the main port refused without a credential under --metrics-auth ($code)" test "$code" = 401

# A hijacked attach tunnel through endpoint 1, held open until told.
cat >"$tmp/tunnel.py" <<'EOF'
import os, socket, sys, time
port, jwt, flag = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall((
    "POST /api/endpoints/1/docker/containers/abc/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\n"
    "Host: localhost\r\nAuthorization: Bearer %s\r\n"
    "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n" % jwt).encode())
head = s.recv(4096).decode(errors="replace")
print(head.splitlines()[0] if head else "no answer", flush=True)
if not head.startswith("HTTP/1.1 101"):
    sys.exit(1)
s.sendall(b"ping\n")
deadline = time.time() + 60
while os.path.exists(flag) and time.time() < deadline:
    time.sleep(0.2)
s.close()
EOF
touch "$tmp/tunnel.flag"
python3 "$tmp/tunnel.py" "$PORT" "$JWT" "$tmp/tunnel.flag" >"$tmp/tunnel.log" 2>&1 &
tunnel_pid=$!
pids+=($tunnel_pid)
wait_until 10 grep -q HTTP "$tmp/tunnel.log" || true
check "attach through endpoint 1 upgrades ($(head -n1 "$tmp/tunnel.log"))" grep -q "HTTP/1.1 101" "$tmp/tunnel.log"

# ------------------------------------------------------------ promtool
curl -fsS "$M" >"$tmp/metrics.txt"
lint="$(promtool check metrics <"$tmp/metrics.txt" 2>&1)" && lint_rc=0 || lint_rc=$?
if [[ $lint_rc == 0 && -z $lint ]]; then
    pass "promtool check metrics: nothing to report ($(grep -c '^# TYPE' "$tmp/metrics.txt") metric families)"
else
    fail "promtool check metrics (exit $lint_rc):"
    echo "$lint" | sed 's/^/      /' >&2
fi

# ----------------------------------------------------- Prometheus queries
# promq EXPR: the result vector as JSON [[{labels}, value], ...].
promq() {
    curl -fsS -G --max-time 5 --data-urlencode "query=$1" "$P/api/v1/query" |
        python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["status"] == "success", d
r = d["data"]["result"]
if d["data"]["resultType"] == "scalar":
    r = [{"metric": {}, "value": r}]
print(json.dumps([[x["metric"], float(x["value"][1])] for x in r]))'
}
# expect DESCRIPTION EXPR PYTHON-CONDITION: polls (20 s) until the condition,
# a Python expression over r (the result of promq EXPR), holds.
expect() {
    local what=$1 expr=$2 cond=$3 t0=$SECONDS r=
    while :; do
        r="$(promq "$expr" 2>&1)" || r="query failed: $r"
        if python3 -c 'import json, math, sys; r = json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2]) else 1)' \
            "$r" "$cond" 2>/dev/null; then
            pass "$what"
            return
        fi
        if ((SECONDS - t0 >= 20)); then
            fail "$what"
            echo "      query: $expr" >&2
            echo "      want:  $cond" >&2
            echo "      got:   $r" >&2
            return
        fi
        sleep 1
    done
}

expect "target up: up{job=\"berth\"} == 1" 'up{job="berth"}' 'len(r) == 1 and r[0][1] == 1'
expect "tunnel open: berth_tunnels_open == 1" 'berth_tunnels_open' 'len(r) == 1 and r[0][1] == 1'
rm -f "$tmp/tunnel.flag"
wait "$tunnel_pid" 2>/dev/null || true
expect "tunnel closed: berth_tunnels_open back to 0" 'berth_tunnels_open' 'len(r) == 1 and r[0][1] == 0'

expect "requests by route template and status: POST /api/auth 200 x3 and 422 x2" \
    'sum by (status) (berth_http_requests_total{route="/api/auth", method="POST"})' \
    'sorted((m["status"], v) for m, v in r) == [("200", 3.0), ("422", 2.0)]'
expect "proxied calls are counted by the proxy series only, not as API requests" \
    'count(berth_http_requests_total{route=~"/api/endpoints/.+/docker.*"}) or vector(0)' 'r[0][1] == 0'
expect "no raw ids in route labels" \
    'count(berth_http_requests_total{route=~".*/[0-9]+(/.*)?"}) or vector(0)' 'r[0][1] == 0'
expect "latency histogram: 18 buckets (le) incl. +Inf" \
    'count(count by (le) (berth_http_request_duration_seconds_bucket))' 'r and r[0][1] == 18'
expect "latency histogram: +Inf bucket of /api/auth counts all 5 logins" \
    'sum(berth_http_request_duration_seconds_bucket{route="/api/auth", le="+Inf"})' 'r and r[0][1] == 5'
# Quantiles over the counters since start (a rate window could fall past
# the traffic on a slow machine).
expect "latency quantile: p50 of /api/auth is a sane number (0 < p50 < 5 s)" \
    'histogram_quantile(0.5, sum by (le) (berth_http_request_duration_seconds_bucket{route="/api/auth"}))' \
    'r and 0 < r[0][1] < 5'
# missing: GET /api/endpoints and GET /metrics without a credential.
expect "auth failures by reason: bad_credentials 2, invalid_jwt 1, missing 2" \
    'berth_auth_failures_total' \
    'all(dict((m["reason"], v) for m, v in r).get(k) == n for k, n in [("bad_credentials", 2), ("invalid_jwt", 1), ("missing", 2)])'
expect "endpoint health: berth_endpoint_up 1 for endpoint 1, 0 for endpoint 2" \
    'berth_endpoint_up' 'sorted((m["endpoint"], v) for m, v in r) == [("1", 1.0), ("2", 0.0)]'
expect "endpoints by status: up 1, down 1" \
    'berth_endpoints' 'dict((m["status"], v) for m, v in r) == {"up": 1.0, "down": 1.0}'
expect "proxied requests per endpoint: endpoint 1 /containers/json 2xx >= 20" \
    'sum(berth_proxy_requests_total{endpoint="1", route="/containers/json", status_class="2xx"})' 'r and r[0][1] >= 20'
expect "proxied requests per endpoint: ids templated (/containers/{id}/json)" \
    'berth_proxy_requests_total{endpoint="1", route="/containers/{id}/json"}' 'len(r) >= 1'
expect "proxied requests per endpoint: endpoint 2 answers 5xx" \
    'sum(berth_proxy_requests_total{endpoint="2", status_class="5xx"})' 'r and r[0][1] >= 5'
expect "proxy latency per endpoint: p99 of endpoint 1 is a sane number (0 < p99 < 5 s)" \
    'histogram_quantile(0.99, sum by (endpoint, le) (berth_proxy_request_duration_seconds_bucket{endpoint="1"}))' \
    'r and 0 < r[0][1] < 5'
expect "upstream connect failures for endpoint 2" \
    'sum by (endpoint) (berth_upstream_connect_failures_total)' \
    'dict((m["endpoint"], v) for m, v in r).get("2", 0) >= 5 and "1" not in dict((m["endpoint"], v) for m, v in r)'
expect "endpoint health checks timed: one histogram for all (count >= 2), the last check per endpoint" \
    'berth_endpoint_check_duration_seconds_count' 'len(r) == 1 and r[0][1] >= 2'
expect "each endpoint's last check: a duration per endpoint (0 < d < 5 s)" \
    'berth_endpoint_check_last_duration_seconds' 'len(r) == 2 and all(0 < v < 5 for m, v in r)'
expect "process metrics: resident memory > 1 MB, open fds > 0" \
    'process_resident_memory_bytes > 1e6 and on() process_open_fds > 0' 'len(r) == 1'
expect "connection gauges present (berth_connections_open, berth_upstream_pool_connections)" \
    'count(berth_connections_open) + count(count(berth_upstream_pool_connections))' 'r and r[0][1] == 2'

rules="$(curl -fsS "$P/api/v1/rules")"
check "alert rules loaded: 8 rules, all evaluating without error" python3 -c '
import json, sys
g = json.loads(sys.argv[1])["data"]["groups"]
rules = [r for x in g for r in x["rules"]]
bad = [(r["name"], r.get("lastError")) for r in rules if r.get("health") != "ok"]
if len(rules) != 8 or bad:
    print("rules:", len(rules), "unhealthy:", bad, file=sys.stderr)
    sys.exit(1)' "$rules"
expect "BerthEndpointDown pending for endpoint 2 (and only 2)" \
    'ALERTS{alertname="BerthEndpointDown"}' \
    '[(m["endpoint"], m["alertstate"]) for m, v in r] == [("2", "pending")]'

# Every query of the Grafana dashboard runs on this Prometheus.
dash="$(python3 - "$P" <<'PY'
import json, sys, urllib.parse, urllib.request
P = sys.argv[1]
d = json.load(open("deploy/grafana/berth.json"))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
errors, empty = [], []
for e in exprs:
    q = e.replace("$__rate_interval", "1m").replace("$instance", ".*")
    try:
        r = json.load(urllib.request.urlopen(P + "/api/v1/query?" + urllib.parse.urlencode({"query": q}), timeout=5))
        if not r["data"]["result"]:
            empty.append(e)
    except Exception as x:  # HTTP 400: a bad query
        errors.append((e, str(x)))
print(len(exprs), len(errors), len(empty))
for e, x in errors:
    print("error:", e, x, file=sys.stderr)
for e in empty:
    print("no data:", e, file=sys.stderr)
PY
)"
read -r n_q n_err n_empty <<<"$dash"
check "Grafana dashboard: all $n_q queries run ($n_err errors), $((n_q - n_empty)) return data (at least 80%)" \
    bash -c '(($2 == 0 && ($1 - $3) * 5 >= $1 * 4))' _ "$n_q" "$n_err" "$n_empty"

if ((failed)); then dump_logs; fi
summary
