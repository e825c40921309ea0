#!/usr/bin/env bash
# Many hosts at once (issue 20): 10,000 registered endpoints, half of them
# dead, load spread over 1,000 live ones, in the same Berth as a run where
# all the load goes to one endpoint.
#
# The hosts, all on loopback, all served by processes on the server core:
#   live  ENDPOINTS/2 endpoints on one mock engine serving SOCKETS unix
#         sockets (endpoint i on socket i % SOCKETS), so the LOADED endpoints
#         that take the load each have a socket of their own;
#   hung  a quarter: one TCP port of a mock in `--fail hang` mode, which
#         accepts, reads the request and never answers;
#   refused  a quarter: a TCP port nobody listens on.
# Registration pings every host, so the dead ones answer while they are
# registered and die afterwards (the hung port's mock is restarted in hang
# mode, the refused port's mock is stopped), as hosts that went away would.
#
# Two Berths then run on copies of that data directory:
#   Q  health interval 1h: its one round (at start) is over before anything
#      is measured, so its checker is idle. The one-endpoint and spread runs
#      are measured on Q, and its memory: RSS per registered endpoint (Q
#      after its round minus a Berth with an empty store, over ENDPOINTS)
#      and per pooled connection (RSS and descriptors after a spread run
#      minus after a one-endpoint run, over the upstream connections it
#      added).
#   B  the same data and flags, with the checker busy on the dead half for
#      the whole measurement (B_STATE=died, the default: B starts on the
#      data of the registration, so the dead hosts are still recorded up
#      and each check stores a status change, as when hosts have just
#      died; B_STATE=down: B starts on Q's data after its round, the dead
#      hosts already recorded down, as when they have been dead a while,
#      so checks change nothing): its first round checks the live endpoints
#      first (they were up), then the dead ones, HEALTH_CONCURRENCY at once,
#      each hung check held for DEAD_TIMEOUT (Berth's default 5 s), so the
#      dead half takes ENDPOINTS/4 x DEAD_TIMEOUT / concurrency (195 s by
#      default); measuring starts once that phase has begun, and the count of
#      B's connections held open to the hung port, taken at the end of each
#      window, shows it was still going.
# Rounds interleave q-one, q-spread and b-spread (each round starting one
# further on). The Berth not being measured is stopped (SIGSTOP) for the
# window, so neither sees the other's work. Every run goes through the same
# wrk Lua script (one list of endpoint ids, rotated per request), so the
# load generator costs the same in all three.
#
# Prints, per target, the median rps, min-max, median p99, and the per-round
# ratios spread / one and p99 busy / quiet; then the memory figures and the
# load average.
#
# Usage: scripts/bench/many-hosts.sh
# Knobs: ENDPOINTS (10000), LOADED (1000), SOCKETS (1000), ROUNDS (5),
#        DURATION (6s), CONNS (64), DEAD_TIMEOUT (5s), B_STATE (died or
#        down), HEALTH_CONCURRENCY (64), REQ_PATH (/v1.41/containers/json),
#        EXTRA_FLAGS (more berth flags, both Berths), PERF=1 (profile a
#        one-endpoint and a spread run first), SKIP_BUILD=1,
#        BERTH_BIN=/path (A/B)
source "$(dirname "$0")/lib.sh"

n=${ENDPOINTS:-10000}
loaded=${LOADED:-1000}
sockets=${SOCKETS:-1000}
rounds=${ROUNDS:-5}
dur=${DURATION:-6s}
conns=${CONNS:-64}
dead_timeout=${DEAD_TIMEOUT:-5s}
concurrency=${HEALTH_CONCURRENCY:-64}
req_path=${REQ_PATH:-/v1.41/containers/json}
read -r -a extra <<<"${EXTRA_FLAGS:-}"

live=$((n / 2))
((loaded >= 1 && loaded <= live)) || die "LOADED ($loaded) must be between 1 and ENDPOINTS/2 ($live)"
((sockets >= 1 && sockets <= 10000)) || die "SOCKETS must be between 1 and 10000"
((rounds >= 1 && rounds <= 50)) || die "ROUNDS must be between 1 and 50"
have wrk || die "wrk is not installed (apt-get install -y wrk)"
have ss || die "ss (iproute2) is needed to count connections"

PORT_Q=$((BASE_PORT + 5))
PORT_B=$((BASE_PORT + 6))
PORT_HANG=$((BASE_PORT + 7))
PORT_REFUSED=$((BASE_PORT + 8))

# Q and B each hold one descriptor per pooled connection (about LOADED
# after a spread run, plus one-endpoint's CONNS) and B one per check in
# flight: far below the usual limit, but say so if it is not.
if (($(ulimit -n) < 4 * loaded + 1024)); then ulimit -n $((4 * loaded + 1024)) 2>/dev/null ||
  die "'ulimit -n' of $(ulimit -n) is too low for LOADED=$loaded"; fi

# A stopped Berth must be running again for the EXIT trap to stop it
# gracefully (SIGTERM waits for SIGCONT; SIGKILL would not).
cont_all() {
  local f
  for f in "$BENCH_DIR/q.pid" "$BENCH_DIR/b.pid"; do
    [ -f "$f" ] && kill -CONT "$(cat "$f")" 2>/dev/null || true
  done
}
trap 'cont_all; bench_cleanup' EXIT

build_berth
note "$(machine_line 2>/dev/null || uname -r)"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

sock_of() { if (($1 == 0)); then echo "$MOCK_SOCK"; else echo "$MOCK_SOCK.$1"; fi; }

# start_aux NAME PORT [mock flags...]: a mock engine on one TCP port.
start_aux() {
  local name=$1 port=$2
  shift 2
  stop_stale "$name.pid"
  "${PIN_SERVER[@]}" "$BIN/berth-mock-docker" --tcp "127.0.0.1:$port" --workers 0 "$@" \
    >"$BENCH_DIR/$name.out" 2>"$BENCH_DIR/$name.err" &
  echo $! >"$BENCH_DIR/$name.pid"
  _started+=("$BENCH_DIR/$name.pid")
  wait_for test -s "$BENCH_DIR/$name.out" || die "mock $name did not start: $(cat "$BENCH_DIR/$name.err")"
}

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
# Connections a process holds to the live engine's sockets (its pools).
upstream_unix() { ss -Hxp state connected 2>/dev/null | grep -c "pid=$1," || true; }
# Connections a process holds open to the hung port (checks in flight).
hung_open() { ss -Htnp state established "( dport = :$PORT_HANG )" 2>/dev/null | grep -c "pid=$1," || true; }
# Endpoints with status 2 (down), from the list's total header.
down_count() {
  curl -fsS -o /dev/null -D - -H "Authorization: Bearer $2" \
    "http://127.0.0.1:$1/api/endpoints?status%5B%5D=2&limit=1&excludeSnapshots=true" |
    awk 'tolower($1)=="x-total-count:"{print $2+0}'
}

# --- the hosts
start_mock --unix-count "$sockets"
wait_for test -S "$(sock_of $((sockets - 1)))" || die "the mock engine did not make $sockets sockets"
start_aux hang "$PORT_HANG"
start_aux refused "$PORT_REFUSED"

# --- registration (a fresh store), and the empty store's RSS
start_berth "${extra[@]}"
berth_admin
sleep 3
rss_empty=$(rss_kib "$BERTH_PID")
list="$BENCH_DIR/many-hosts.list"
ids="$BENCH_DIR/many-hosts.ids"
{
  for ((i = 0; i < live; i++)); do echo "live$i unix://$(sock_of $((i % sockets)))"; done
  # hung and refused alternate, so the checker meets both kinds throughout
  for ((i = 0; i < n - live; i++)); do
    if ((i % 2 == 0)); then echo "hung$i tcp://127.0.0.1:$PORT_HANG"; else echo "refused$i tcp://127.0.0.1:$PORT_REFUSED"; fi
  done
} >"$list"
t=$SECONDS
register_endpoints "$list" "$ids"
note "$n endpoints registered in $((SECONDS - t)) s ($live live on $sockets sockets, $((n - live)) to die)"
stop_pid "$BERTH_PID" "$BENCH_DIR/berth.pid"

# the dead hosts die
stop_pid "$(cat "$BENCH_DIR/hang.pid")" "$BENCH_DIR/hang.pid"
stop_pid "$(cat "$BENCH_DIR/refused.pid")" "$BENCH_DIR/refused.pid"
start_aux hang "$PORT_HANG" --fail hang
rc=0
curl -sS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT_REFUSED/_ping" 2>/dev/null || rc=$?
[ "$rc" = 7 ] || die "port $PORT_REFUSED still answers (curl exit $rc), it must refuse"
rc=0
curl -sS -o /dev/null --max-time 1 "http://127.0.0.1:$PORT_HANG/_ping" 2>/dev/null || rc=$?
[ "$rc" = 28 ] || die "port $PORT_HANG does not hang (curl exit $rc)"

# The wrk script: the ids of a file, rotated request by request.
cat >"$BENCH_DIR/rotate.lua" <<'EOF'
local reqs, n, i = {}, 0, 0
function init(args)
  for id in io.lines(args[1]) do
    n = n + 1
    reqs[n] = wrk.format("GET", "/api/endpoints/" .. id .. "/docker" .. args[2])
  end
end
function request()
  i = i % n + 1
  return reqs[i]
end
EOF
awk -v k="$loaded" '$1 ~ /^live/ && c < k {print $2; c++}' "$ids" >"$BENCH_DIR/spread.ids"
head -n 1 "$BENCH_DIR/spread.ids" >"$BENCH_DIR/one.ids"

b_state=${B_STATE:-died}
data_b="$BENCH_DIR/data-b"
rm -rf "$data_b"
case $b_state in
died) cp -a "$BENCH_DIR/berth-data" "$data_b" ;;
down) ;; # copied from Q's data once its round is over
*) die "B_STATE must be died or down" ;;
esac

# --- Q: its one round, then idle (a short timeout and a wide concurrency
# only to get that round over quickly; they play no part afterwards)
start_berth_on q "$PORT_Q" "$BENCH_DIR/berth-data" --health-interval 1h --health-timeout 1s \
  --health-concurrency 512 "${extra[@]}"
QPID=$BERTH_PID
PORT_BERTH=$PORT_Q
QTOKEN=$(berth_login)
for ((i = 0; i < 240; i++)); do
  down=$(down_count "$PORT_Q" "$QTOKEN")
  [ "$down" = "$((n - live))" ] && [ "$(hung_open "$QPID")" = 0 ] && break
  sleep 0.5
done
[ "$down" = "$((n - live))" ] || die "Q's first round did not mark the $((n - live)) dead endpoints down ($down)"
note "Q's first round is over after $((i / 2)) s: $down endpoints down"
if [ "$b_state" = down ]; then
  # a consistent copy: Q is stopped while it is taken (its pools stay)
  kill -STOP "$QPID"
  cp -a "$BENCH_DIR/berth-data" "$data_b"
  kill -CONT "$QPID"
fi
sleep 2
rss_idle=$(rss_kib "$QPID")
fd_idle=$(fd_count "$QPID")

wrk_run() { # PORT TOKEN IDS DURATION
  "${PIN_CLIENT[@]}" wrk -t1 -c"$conns" -d"$4" --latency -s "$BENCH_DIR/rotate.lua" \
    -H "Authorization: Bearer $2" "http://127.0.0.1:$1" -- "$3" "$req_path"
}
# "rps p99-in-µs requests" from wrk's output; dies on errors or non-2xx
# answers
wrk_parse() {
  grep -qE 'Socket errors|Non-2xx' <<<"$1" && { echo "$1" >&2; die "$2 had errors under load"; }
  awk '/Requests\/sec/{rps=$2} / requests in /{n=$1}
       $1=="99%"{v=$2; u=v; gsub(/[0-9.]/,"",u); sub(/[a-z]+$/,"",v);
                 p=(u=="us")?v:(u=="ms")?v*1000:(u=="s")?v*1e6:v}
       END{printf "%s %.0f %d\n", rps, p, n}' <<<"$1"
}
# CPU time of a process so far, in clock ticks (user + system)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# --- memory per pooled connection, on Q (B not started yet)
out=$(wrk_run "$PORT_Q" "$QTOKEN" "$BENCH_DIR/one.ids" 3s)
wrk_parse "$out" warm-one >/dev/null
rss_one=$(rss_kib "$QPID") fd_one=$(fd_count "$QPID") up_one=$(upstream_unix "$QPID")
out=$(wrk_run "$PORT_Q" "$QTOKEN" "$BENCH_DIR/spread.ids" 3s)
wrk_parse "$out" warm-spread >/dev/null
rss_spread=$(rss_kib "$QPID") fd_spread=$(fd_count "$QPID") up_spread=$(upstream_unix "$QPID")
note "Q after one-endpoint warm-up: RSS ${rss_one} KiB, ${fd_one} fds, ${up_one} upstream; after spread: ${rss_spread} KiB, ${fd_spread} fds, ${up_spread} upstream"

# PERF=1: where Q's and the engine's CPU goes in a one-endpoint and a
# spread run (perf, software clock), own time by symbol, side by side.
if [ "${PERF:-0}" = 1 ]; then
  have perf || die "perf is not installed (apt-get install -y linux-perf)"
  mock_pid=$(cat "$BENCH_DIR/mock.pid")
  for what in one spread; do
    perfs=()
    for p in "$QPID" "$mock_pid"; do
      "${PIN_CLIENT[@]}" perf record -e cpu-clock -F 1999 -p "$p" -o "$BENCH_DIR/perf-$what-$p.data" -- sleep 6 2>"$BENCH_DIR/perf.err" &
      perfs+=($!)
    done
    sleep 0.3
    wrk_run "$PORT_Q" "$QTOKEN" "$BENCH_DIR/$what.ids" 5s | grep Requests/sec >&2
    wait "${perfs[@]}"
    for p in "$QPID" "$mock_pid"; do
      perf report -i "$BENCH_DIR/perf-$what-$p.data" --no-children --stdio --sort sym --percent-limit 0.4 2>/dev/null |
        grep -v '^#' | grep -v '^$' | cut -c1-140 >"$BENCH_DIR/perf-$what-$p.txt"
      note "perf $what, pid $p ($([ "$p" = "$QPID" ] && echo berth || echo mock)): $(head -c 0 /dev/null)$(perf report -i "$BENCH_DIR/perf-$what-$p.data" --stdio --sort sym 2>/dev/null | awk '/^# Samples/{print $3, $4}')"
      head -25 "$BENCH_DIR/perf-$what-$p.txt" >&2
    done
  done
fi

# --- B: the checker busy on the dead half
start_berth_on b "$PORT_B" "$data_b" --health-interval 1h --health-timeout "$dead_timeout" \
  --health-concurrency "$concurrency" "${extra[@]}"
BPID=$BERTH_PID
PORT_BERTH=$PORT_B
BTOKEN=$(berth_login)
t=$SECONDS
# the dead phase has begun when most permits hold a hung connection
until (($(hung_open "$BPID") >= concurrency / 2)); do
  ((SECONDS - t < 120)) || die "B's checker never reached the dead endpoints"
  sleep 0.5
done
note "B's checker is on the dead half after $((SECONDS - t)) s ($(hung_open "$BPID") hung checks in flight)"
out=$(wrk_run "$PORT_B" "$BTOKEN" "$BENCH_DIR/spread.ids" 2s)
wrk_parse "$out" warm-b >/dev/null

# --- rounds
mock_pid=$(cat "$BENCH_DIR/mock.pid")
results="$BENCH_DIR/many-hosts.results"
: >"$results"
targets=(q-one q-spread b-spread)
declare -A pid_of=([q-one]=$QPID [q-spread]=$QPID [b-spread]=$BPID)
declare -A other_of=([q-one]=$BPID [q-spread]=$BPID [b-spread]=$QPID)
declare -A port_of=([q-one]=$PORT_Q [q-spread]=$PORT_Q [b-spread]=$PORT_B)
declare -A token_of=([q-one]=$QTOKEN [q-spread]=$QTOKEN [b-spread]=$BTOKEN)
declare -A ids_of=([q-one]=one.ids [q-spread]=spread.ids [b-spread]=spread.ids)
for ((r = 1; r <= rounds; r++)); do
  for ((j = 0; j < ${#targets[@]}; j++)); do
    name=${targets[$(((j + r - 1) % ${#targets[@]}))]}
    kill -STOP "${other_of[$name]}"
    kill -CONT "${pid_of[$name]}"
    sleep 0.5
    c0=$(cpu_ticks "${pid_of[$name]}") m0=$(cpu_ticks "$mock_pid")
    out=$(wrk_run "${port_of[$name]}" "${token_of[$name]}" "$BENCH_DIR/${ids_of[$name]}" "$dur")
    c1=$(cpu_ticks "${pid_of[$name]}") m1=$(cpu_ticks "$mock_pid")
    read -r rps p99 reqs <<<"$(wrk_parse "$out" "$name")"
    cpu_berth=$(((c1 - c0) * TICK_US * 10 / reqs)) cpu_mock=$(((m1 - m0) * TICK_US * 10 / reqs))
    hung=$(hung_open "${pid_of[$name]}")
    fds=$(fd_count "${pid_of[$name]}")
    load1=$(cut -d' ' -f1 /proc/loadavg)
    echo "$name $r $rps $p99 $hung $fds $load1 $cpu_berth $cpu_mock" | tee -a "$results" >&2
  done
done
cont_all
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- pool gauges of Q, once (a scrape of 10,000 endpoints' series raises
# RSS, so it comes after every RSS sample)
pools=$(curl -fsS -H "Authorization: Bearer $QTOKEN" "http://127.0.0.1:$PORT_Q/metrics" |
  awk '$1 ~ /^berth_upstream_pool_connections\{/ {
         if ($1 ~ /state="open"/) { open += $2; if ($2 > 0) hosts++; if ($2 > mx) mx = $2 }
         if ($1 ~ /state="idle"/) idle += $2 }
       END { printf "%d %d %d %d\n", open, idle, hosts, mx }')
b_down=$(down_count "$PORT_B" "$BTOKEN")

python3 - "$results" "$n" "$live" "$loaded" "$sockets" "$rss_empty" "$rss_idle" "$fd_idle" \
  "$rss_one" "$fd_one" "$up_one" "$rss_spread" "$fd_spread" "$up_spread" "$pools" "$b_down" \
  "$load_start" "$load_end" "$dead_timeout" "$concurrency" "$conns" "$dur" "$req_path" "$b_state" <<'EOF'
import statistics as st, sys
a = sys.argv[1:]
rows = {}
for line in open(a[0]):
    name, r, rps, p99, hung, fds, load1, cpu_b, cpu_m = line.split()
    rows.setdefault(name, {})[int(r)] = (float(rps), float(p99), int(hung), int(fds), float(load1),
                                         int(cpu_b) / 10, int(cpu_m) / 10)
n, live, loaded, sockets = map(int, a[1:5])
rss_empty, rss_idle, fd_idle, rss_one, fd_one, up_one, rss_spread, fd_spread, up_spread = map(int, a[5:14])
p_open, p_idle, p_hosts, p_max = map(int, a[14].split())
b_down = a[15]
load_start, load_end, dead_timeout, conc, conns, dur, path, b_state = a[16:24]
rounds = sorted(rows["q-one"])
print(f"{n} endpoints: {live} live on {sockets} unix sockets of one mock engine, {(n-live+1)//2} hung (accept, never answer), "
      f"{(n-live)//2} refused; load over {loaded} live ones; {len(rounds)} rounds x {dur}, {conns} connections, GET {path}")
print(f"{'target':<10} {'rps':>8} {'min-max':>15} {'p99 us':>8} {'p99 min-max':>15} {'CPU us/req':>11} {'(mock)':>7}  rps per round")
for name in ("q-one", "q-spread", "b-spread"):
    v = rows[name]
    rps = [v[r][0] for r in rounds]; p = [v[r][1] for r in rounds]
    cb = st.median(v[r][5] for r in rounds); cm = st.median(v[r][6] for r in rounds)
    print(f"{name:<10} {st.median(rps):8.0f} {min(rps):7.0f}-{max(rps):<7.0f} {st.median(p):8.0f} {min(p):7.0f}-{max(p):<7.0f} "
          f"{cb:11.1f} {cm:7.1f}  " + " ".join(f"{x:.0f}" for x in rps))
ratio = [rows["q-spread"][r][0] / rows["q-one"][r][0] for r in rounds]
print(f"spread / one-endpoint rps per round: {' '.join(f'{x:.2f}' for x in ratio)} (median {st.median(ratio):.2f}; target >= 0.90)")
p99r = [rows["q-spread"][r][1] / rows["q-one"][r][1] for r in rounds]
print(f"spread / one-endpoint p99 per round: {' '.join(f'{x:.2f}' for x in p99r)} (median {st.median(p99r):.2f})")
cpu = [rows["q-spread"][r][5] / rows["q-one"][r][5] for r in rounds]
cpum = [rows["q-spread"][r][6] / rows["q-one"][r][6] for r in rounds]
print(f"spread / one-endpoint CPU per request, Berth: {' '.join(f'{x:.2f}' for x in cpu)} (median {st.median(cpu):.2f}); "
      f"mock engine: {' '.join(f'{x:.2f}' for x in cpum)} (median {st.median(cpum):.2f})")
busy = [rows["b-spread"][r][1] / rows["q-spread"][r][1] for r in rounds]
busy_rps = [rows["b-spread"][r][0] / rows["q-spread"][r][0] for r in rounds]
hung = [rows["b-spread"][r][2] for r in rounds]
print(f"live p99, checker busy on the dead half / idle, per round: {' '.join(f'{x:.2f}' for x in busy)} (median {st.median(busy):.2f}); "
      f"rps {' '.join(f'{x:.2f}' for x in busy_rps)} (median {st.median(busy_rps):.2f})")
print(f"B's checks held open on the hung port at the end of each window: {' '.join(map(str, hung))} "
      f"(health timeout {dead_timeout}, concurrency {conc}, B_STATE={b_state}); B's endpoints down at the end: {b_down}")
fds = [rows["q-spread"][r][3] for r in rounds]
print(f"Q's descriptors after each spread window: {' '.join(map(str, fds))} (idle before load: {fd_idle})")
print(f"memory per registered endpoint: RSS {rss_empty/1024:.1f} MiB empty store -> {rss_idle/1024:.1f} MiB with {n} "
      f"(first health round over, no load): {(rss_idle-rss_empty)*1024/n:.0f} bytes per endpoint")
d = up_spread - up_one
if d > 0:
    print(f"memory per pooled connection: after one-endpoint load {rss_one/1024:.1f} MiB, {fd_one} fds, {up_one} upstream; "
          f"after spread load {rss_spread/1024:.1f} MiB, {fd_spread} fds, {up_spread} upstream: "
          f"{(rss_spread-rss_one)*1024/d:.0f} bytes and {(fd_spread-fd_one)/d:.2f} descriptors per connection")
else:
    print(f"memory per pooled connection: no connections added by the spread load ({up_one} -> {up_spread})")
print(f"Q's pools at the end (/metrics): {p_open} open, {p_idle} idle, on {p_hosts} endpoints, at most {p_max} on one")
print(f"load average: {load_start} at start, {load_end} at the end; 1-min during the windows: "
      + " ".join(f"{rows[nm][r][4]:.1f}" for r in rounds for nm in ("q-one", "q-spread", "b-spread")))
EOF
