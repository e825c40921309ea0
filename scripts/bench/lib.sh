# Shared helpers of Berth's load scripts (sourced, not run).
#
# Everything listens on loopback only, under one run directory ($BENCH_DIR,
# default /tmp/berth-bench-run), and every process a script starts is
# recorded and stopped by its EXIT trap. Ports start at $BASE_PORT
# (default 19100) so a run does not collide with the shared anchors'
# 9100-9103 or with the test suite's random ports.
#
# CPU placement on a 2-core machine (see /work/shared/bench/README.md): the
# servers (mock backend and the proxy under test) get core $SERVER_CPUS
# (default 0) and the load generator core $CLIENT_CPUS (default 1).

set -euo pipefail

BENCH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_SCRIPTS="$BENCH_REPO/scripts/bench"
BENCH_DIR=${BENCH_DIR:-/tmp/berth-bench-run}
BASE_PORT=${BASE_PORT:-19100}
# SERVER_CPUS= CLIENT_CPUS= (set and empty) leave every process unpinned.
SERVER_CPUS=${SERVER_CPUS-0}
CLIENT_CPUS=${CLIENT_CPUS-1}
# BERTH_WORKERS= (set and empty) leaves --workers out: Berth picks its own,
# as users run it.
BERTH_WORKERS=${BERTH_WORKERS-1}
# The knob shares its name with Berth's own setting (env BERTH_WORKERS):
# kept out of Berth's environment, where an empty value is invalid.
export -n BERTH_WORKERS
MOCK_WORKERS=${MOCK_WORKERS:-0}
ADMIN_PASSWORD=berth-bench-password
ANCHOR_SECRET=berth-bench-secret

PORT_FLOOR=$((BASE_PORT + 0))
PORT_NGINX=$((BASE_PORT + 1))
PORT_HAPROXY=$((BASE_PORT + 2))
PORT_HYPER=$((BASE_PORT + 3))
PORT_BERTH=$((BASE_PORT + 4))
MOCK_SOCK="$BENCH_DIR/docker.sock"
BIN="$BENCH_DIR/bin"

mkdir -p "$BENCH_DIR" "$BIN"

# pid files of everything started, stopped in reverse order on exit
_started=()
bench_cleanup() {
  local i pid
  for ((i = ${#_started[@]} - 1; i >= 0; i--)); do
    pid=$(cat "${_started[$i]}" 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  # give them a moment, then make sure
  sleep 0.3
  for ((i = ${#_started[@]} - 1; i >= 0; i--)); do
    pid=$(cat "${_started[$i]}" 2>/dev/null || true)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -f "${_started[$i]}"
  done
  _started=()
}
trap bench_cleanup EXIT

note() { echo "[bench] $*" >&2; }
die() { echo "[bench] error: $*" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

# Stops a process recorded by a previous (interrupted) run, by its pid file.
stop_stale() {
  local f="$BENCH_DIR/$1"
  if [ -f "$f" ]; then
    kill "$(cat "$f")" 2>/dev/null || true
    sleep 0.3
    rm -f "$f"
  fi
}

# Command prefixes that pin to the server / client cores: taskset execs the
# program, so `$!` of a background "${PIN_SERVER[@]}" prog & is prog's pid.
PIN_SERVER=()
PIN_CLIENT=()
if have taskset; then
  [ -n "$SERVER_CPUS" ] && PIN_SERVER=(taskset -c "$SERVER_CPUS")
  [ -n "$CLIENT_CPUS" ] && PIN_CLIENT=(taskset -c "$CLIENT_CPUS")
fi

# Builds berth and berth-mock-docker (release; the mock is a binary of the
# crates/berth-testkit crate) and copies them to $BIN, so
# that another engineer's rebuild cannot swap a binary under a running
# measurement. SKIP_BUILD=1 reuses the copies; BERTH_BIN=/path measures
# that berth binary instead (A/B of a change).
build_berth() {
  if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -x "$BIN/berth-mock-docker" ] || [ ! -x "$BIN/berth" ]; then
    note "cargo build --release (berth, and berth-mock-docker of berth-testkit) ..."
    (cd "$BENCH_REPO" && cargo build --release -q -p berth -p berth-testkit --bin berth --bin berth-mock-docker)
    local target=${CARGO_TARGET_DIR:-$BENCH_REPO/target}
    cp -f "$target/release/berth" "$target/release/berth-mock-docker" "$BIN/"
  fi
  # measure another build (A/B) instead of the tree's
  if [ -n "${BERTH_BIN:-}" ]; then cp -f "$BERTH_BIN" "$BIN/berth"; fi
}

# Builds the load generator (crates/berth-testkit/src/bin/loadgen.rs,
# release) and copies it to $BIN.
build_loadgen() {
  if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -x "$BIN/loadgen" ]; then
    note "cargo build --release -p berth-testkit --bin loadgen ..."
    (cd "$BENCH_REPO" && cargo build --release -q -p berth-testkit --bin loadgen)
    local target=${CARGO_TARGET_DIR:-$BENCH_REPO/target}
    cp -f "$target/release/loadgen" "$BIN/loadgen"
  fi
}

# wait_for CMD...: retries a command for up to 10 s
wait_for() {
  local i
  for ((i = 0; i < 100; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# start_mock [mock flags...]: the project's mock Docker engine on $MOCK_SOCK
# and on TCP $PORT_FLOOR (the floor: clients straight to the backend); more
# flags go to berth-mock-docker (e.g. --unix-count N).
start_mock() {
  stop_stale mock.pid
  rm -f "$MOCK_SOCK"
  "${PIN_SERVER[@]}" "$BIN/berth-mock-docker" --unix "$MOCK_SOCK" --tcp "127.0.0.1:$PORT_FLOOR" \
    --workers "$MOCK_WORKERS" "$@" >"$BENCH_DIR/mock.out" 2>"$BENCH_DIR/mock.err" &
  echo $! >"$BENCH_DIR/mock.pid"
  _started+=("$BENCH_DIR/mock.pid")
  wait_for curl -fsS "http://127.0.0.1:$PORT_FLOOR/_ping" || die "mock backend did not start: $(cat "$BENCH_DIR/mock.err")"
  # nginx's workers run as an unprivileged user and need write access to connect
  wait_for test -S "$MOCK_SOCK" || die "mock backend made no socket"
  chmod 0666 "$MOCK_SOCK"
}

# start_berth [extra flags...]: a fresh data directory every time; sets
# BERTH_PID. Access log off by default, like the anchors' (BERTH_LOG_LEVEL
# to change it; its output goes to $BENCH_DIR/berth.log).
start_berth() {
  stop_stale berth.pid
  rm -rf "$BENCH_DIR/berth-data"
  "${PIN_SERVER[@]}" "$BIN/berth" --bind "127.0.0.1:$PORT_BERTH" --bind-https off \
    --data "$BENCH_DIR/berth-data" ${BERTH_WORKERS:+--workers "$BERTH_WORKERS"} \
    --log-level "${BERTH_LOG_LEVEL:-info,berth::access=off}" "$@" >"$BENCH_DIR/berth.log" 2>&1 &
  BERTH_PID=$!
  echo $BERTH_PID >"$BENCH_DIR/berth.pid"
  _started+=("$BENCH_DIR/berth.pid")
  wait_for curl -fsS "http://127.0.0.1:$PORT_BERTH/api/status" || die "berth did not start: $(tail -5 "$BENCH_DIR/berth.log")"
}

# The log level of an A/B variant: the access log off (as the anchors run),
# unless the variant's name is listed in ACCESS_LOG_VARIANTS, in which case
# it writes its access log (to a file, as it would in production).
variant_log_level() {
  if [[ " ${ACCESS_LOG_VARIANTS:-} " == *" $1 "* ]]; then echo info; else echo "${BERTH_LOG_LEVEL:-info,berth::access=off}"; fi
}

# start_berth_variant NAME BINARY INDEX: one Berth build of an A/B run on
# port $PORT_BERTH + 10 + INDEX with its own data directory, set up like
# start_berth + berth_setup. Sets VARIANT_PORT, VARIANT_PID, BERTH_TOKEN and
# BERTH_ENDPOINT; its log level comes from variant_log_level, and extra
# flags from FLAGS_<NAME> (dashes as underscores), e.g.
# FLAGS_ws="--scheduler work-stealing".
start_berth_variant() {
  local name=$1
  cp -f "$2" "$BIN/berth-$name"
  VARIANT_PORT=$((PORT_BERTH + 10 + $3))
  # HTTPS only when the caller sets VARIANT_HTTPS_PORT; flags after the
  # third argument go to berth as they are.
  local https=(--bind-https off)
  [ -n "${VARIANT_HTTPS_PORT:-}" ] && https=(--bind-https "127.0.0.1:$VARIANT_HTTPS_PORT")
  rm -rf "$BENCH_DIR/data-$name"
  local flags_var="FLAGS_${name//-/_}"
  # shellcheck disable=SC2046,SC2086 # flags are separate words
  "${PIN_SERVER[@]}" "$BIN/berth-$name" --bind "127.0.0.1:$VARIANT_PORT" "${https[@]}" --data "$BENCH_DIR/data-$name" \
    ${BERTH_WORKERS:+--workers "$BERTH_WORKERS"} ${!flags_var:-} --log-level "$(variant_log_level "$name")" "${@:4}" >"$BENCH_DIR/berth-$name.log" 2>&1 &
  VARIANT_PID=$!
  echo "$VARIANT_PID" >"$BENCH_DIR/berth-$name.pid"
  _started+=("$BENCH_DIR/berth-$name.pid")
  wait_for curl -fsS "http://127.0.0.1:$VARIANT_PORT/api/status" || die "berth $name did not start"
  PORT_BERTH=$VARIANT_PORT berth_setup
}

# berth_admin: the admin user, logged in. Sets BERTH_TOKEN.
berth_admin() {
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$PORT_BERTH/api/users/admin/init" -H 'Content-Type: application/json' \
    -d "{\"Username\":\"admin\",\"Password\":\"$ADMIN_PASSWORD\"}" || die "admin init failed"
  BERTH_TOKEN=$(berth_login)
}

# berth_setup: admin, login, endpoint on the mock socket. Sets BERTH_TOKEN
# and BERTH_ENDPOINT.
berth_setup() {
  local base="http://127.0.0.1:$PORT_BERTH" out
  berth_admin
  out=$(curl -fsS -X POST "$base/api/endpoints" -H "Authorization: Bearer $BERTH_TOKEN" \
    -F Name=bench -F EndpointCreationType=1 -F "URL=unix://$MOCK_SOCK") || die "endpoint creation failed"
  BERTH_ENDPOINT=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["Id"])' <<<"$out")
}

berth_login() {
  curl -fsS -X POST "http://127.0.0.1:$PORT_BERTH/api/auth" -H 'Content-Type: application/json' \
    -d "{\"Username\":\"admin\",\"Password\":\"$ADMIN_PASSWORD\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["jwt"])'
}

# register_endpoints LIST OUT: registers one endpoint per "name url" line of
# LIST through the API (`POST /api/endpoints`, urlencoded, as $BERTH_TOKEN
# on $PORT_BERTH) with four keep-alive clients, which is what makes 10,000
# take seconds rather than minutes; writes "name id" lines to OUT. Each
# registration pings its host, so every URL must answer while this runs.
register_endpoints() {
  python3 - "$PORT_BERTH" "$BERTH_TOKEN" "$1" "$2" <<'EOF' || die "registration failed"
import http.client, json, sys, threading, urllib.parse
port, token, src, dst = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
todo = [line.split() for line in open(src) if line.strip()]
errors, ids = [], {}
def worker(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for name, url in todo[k::4]:
        body = urllib.parse.urlencode({"Name": name, "EndpointCreationType": "1", "URL": url})
        c.request("POST", "/api/endpoints", body, {"Authorization": f"Bearer {token}",
                  "Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse(); b = r.read()
        if r.status != 200:
            errors.append((name, r.status, b[:200])); return
        ids[name] = json.loads(b)["Id"]
ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
if errors: print(errors[:3], file=sys.stderr); sys.exit(1)
with open(dst, "w") as f:
    f.writelines(f"{name} {ids[name]}\n" for name, _ in todo)
EOF
}

# start_berth_on NAME PORT DATA [flags...]: Berth on an existing data
# directory (kept, unlike start_berth: a restart, as after an upgrade),
# listening on PORT; its pid file is $BENCH_DIR/NAME.pid and its log
# $BENCH_DIR/NAME.log. Sets BERTH_PID.
start_berth_on() {
  local name=$1 port=$2 data=$3
  shift 3
  stop_stale "$name.pid"
  "${PIN_SERVER[@]}" "$BIN/berth" --bind "127.0.0.1:$port" --bind-https off \
    --data "$data" --workers "$BERTH_WORKERS" \
    --log-level "${BERTH_LOG_LEVEL:-warn}" "$@" >>"$BENCH_DIR/$name.log" 2>&1 &
  BERTH_PID=$!
  echo $BERTH_PID >"$BENCH_DIR/$name.pid"
  _started+=("$BENCH_DIR/$name.pid")
  wait_for curl -fsS "http://127.0.0.1:$port/api/status" || die "berth $name did not start: $(tail -5 "$BENCH_DIR/$name.log")"
}

# stop_pid PID [PIDFILE]: SIGTERM, up to 10 s to exit (Berth drains), then
# SIGKILL; removes PIDFILE.
stop_pid() {
  local i
  kill "$1" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  if [ -n "${2:-}" ]; then rm -f "$2"; fi
}

# anchor_conf NAME: renders scripts/bench/anchors/NAME into $BENCH_DIR
anchor_conf() {
  sed -e "s#@DIR@#$BENCH_DIR#g" -e "s#@SOCK@#$MOCK_SOCK#g" -e "s#@PORT_NGINX@#$PORT_NGINX#g" \
    -e "s#@PORT_HAPROXY@#$PORT_HAPROXY#g" -e "s#@SECRET@#$ANCHOR_SECRET#g" \
    "$BENCH_SCRIPTS/anchors/$1" >"$BENCH_DIR/$1"
  echo "$BENCH_DIR/$1"
}

# start_nginx: the no-auth anchor (NGINX_CONF names another configuration
# in anchors/, e.g. nginx-defaults.conf); returns 1 (with a printed reason)
# when nginx is not installed.
start_nginx() {
  have nginx || { note "nginx row skipped: nginx is not installed (apt-get install -y nginx)"; return 1; }
  stop_stale nginx-anchor.pid
  local conf
  conf=$(anchor_conf "${NGINX_CONF:-nginx-passthrough.conf}")
  "${PIN_SERVER[@]}" nginx -p "$BENCH_DIR" -c "$conf" || { note "nginx row skipped: nginx failed to start"; return 1; }
  _started+=("$BENCH_DIR/nginx-anchor.pid")
}

# start_haproxy: the HAProxy + JWT anchor; returns 1 when not installed.
start_haproxy() {
  have haproxy || { note "haproxy row skipped: haproxy is not installed (apt-get install -y haproxy)"; return 1; }
  stop_stale haproxy.pid
  local conf
  conf=$(anchor_conf haproxy-jwt.cfg)
  "${PIN_SERVER[@]}" haproxy -D -f "$conf" -p "$BENCH_DIR/haproxy.pid" 2>"$BENCH_DIR/haproxy.err" ||
    { note "haproxy row skipped: $(cat "$BENCH_DIR/haproxy.err")"; return 1; }
  _started+=("$BENCH_DIR/haproxy.pid")
}

# start_hyper_jwt: the shared lean-hyper anchor, built with cargo from
# /work/shared/bench/anchors/hyper-jwt into a temporary target directory
# (its code is not part of this repository). HYPER_JWT=0 leaves it out.
HYPER_JWT_SRC=${HYPER_JWT_SRC:-/work/shared/bench/anchors/hyper-jwt}
start_hyper_jwt() {
  [ "${HYPER_JWT:-1}" = 1 ] || { note "hyper-jwt row left out (HYPER_JWT=0)"; return 1; }
  [ -f "$HYPER_JWT_SRC/Cargo.toml" ] || { note "hyper-jwt row skipped: no $HYPER_JWT_SRC"; return 1; }
  local target=${HYPER_JWT_TARGET:-/tmp/berth-bench/hyper-jwt-target}
  local bin="$target/release/hyper-jwt"
  if [ ! -x "$bin" ] || [ "$HYPER_JWT_SRC/src/main.rs" -nt "$bin" ]; then
    note "building the hyper-jwt anchor (once) into $target ..."
    (cd "$HYPER_JWT_SRC" && CARGO_TARGET_DIR="$target" cargo build --release -q) ||
      { note "hyper-jwt row skipped: it did not build"; return 1; }
  fi
  stop_stale hyper-jwt.pid
  "${PIN_SERVER[@]}" "$bin" --listen "127.0.0.1:$PORT_HYPER" --socket "$MOCK_SOCK" --secret "$ANCHOR_SECRET" \
    --threads 1 2>>"$BENCH_DIR/hyper-jwt.log" &
  echo $! >"$BENCH_DIR/hyper-jwt.pid"
  _started+=("$BENCH_DIR/hyper-jwt.pid")
}

# The HS256 token the anchors verify (HAProxy, hyper-jwt).
anchor_jwt() {
  python3 - "$ANCHOR_SECRET" <<'EOF'
import base64, hashlib, hmac, json, sys, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b(json.dumps({"id": 1, "username": "admin", "role": 1, "exp": int(time.time()) + 28800}).encode())
print(h + "." + p + "." + b(hmac.new(sys.argv[1].encode(), (h + "." + p).encode(), hashlib.sha256).digest()))
EOF
}

# Peak and current resident memory of a process, in KiB: "HWM RSS".
mem_kib() {
  awk '/^VmHWM/{h=$2} /^VmRSS/{r=$2} END{print h, r}' "/proc/$1/status"
}

fd_count() {
  ls "/proc/$1/fd" 2>/dev/null | wc -l
}

machine_line() {
  local cpu
  cpu=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)
  echo "$(date -u +%Y-%m-%dT%H:%MZ) | $(nproc) x ${cpu:-unknown cpu} | kernel $(uname -r) | $(free -g | awk '/Mem:/{print $2}') GB RAM"
}

# wrk_rounds RESULTS TARGET...: ROUNDS rounds of DURATION with CONNS
# connections over every TARGET ("name|url|token[|extra wrk args]"),
# interleaved, each round starting one target further on so that no target
# always follows the heaviest one; appends "name round rps" to RESULTS.
wrk_rounds() {
  local results=$1 r j n name url tok extra out
  shift
  local targets=("$@")
  n=${#targets[@]}
  for ((r = 1; r <= rounds; r++)); do
    for ((j = 0; j < n; j++)); do
      IFS='|' read -r name url tok extra <<<"${targets[$(((j + r - 1) % n))]}"
      # shellcheck disable=SC2086 # extra holds separate wrk arguments
      out=$("${PIN_CLIENT[@]}" wrk -t1 -c"$conns" -d"$dur" $extra -H "Authorization: Bearer $tok" "$url")
      grep -q 'Socket errors' <<<"$out" && { echo "$out" >&2; die "$name had socket errors under load"; }
      echo "$name $r $(awk '/Requests\/sec/{print $2}' <<<"$out")" | tee -a "$results" >&2
    done
  done
}

# summarize RESULTS BASE [A/B ...]: from "name round rps" lines, each
# target's median rps and its ratio to BASE (overall and per round), then
# the median ratio of each pair A/B given.
summarize() {
  python3 - "$@" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, _, rps = line.split()[:3]
    rows.setdefault(name, []).append(float(rps))
base = sys.argv[2]
med = {n: statistics.median(v) for n, v in rows.items()}
print(f"{'target':<12} {'rps':>8} {'x ' + base:>14}  per round")
for n, v in med.items():
    per = " ".join(f"{x / med[base]:.2f}" for x in rows[n])
    print(f"{n:<12} {v:8.0f} {v / med[base]:14.2f}  {per}")
for pair in sys.argv[3:]:
    a, b = pair.split("/")
    print(f"{a} / {b}: {med[a] / med[b]:.2f}")
PY
}
