#!/usr/bin/env bash
# Where Berth's CPU goes on the small-request path: perf samples of the
# Berth process (software clock, so it works on VMs without hardware
# counters) while wrk loads it exactly as load.sh does, then perf's report
# of the hottest symbols, own time first, grouped by crate.
#
#   MODE=perf      (default) perf record -e cpu-clock; needs linux-perf
#   MODE=callgrind valgrind --tool=callgrind: instruction counts, repeatable
#                  whatever else the machine does (about 50x slower)
#
# Usage: scripts/bench/profile.sh
# Knobs: DURATION (15 s), CONNS (64, perf; callgrind uses 4),
#        CALLGRAPH=1 (perf --call-graph dwarf; needs a build with debug
#        info: CARGO_PROFILE_RELEASE_DEBUG=line-tables-only), SKIP_BUILD=1
# Output: the report on stdout; raw data under $BENCH_DIR/profile.*
source "$(dirname "$0")/lib.sh"

mode=${MODE:-perf}
dur=${DURATION:-15}
conns=${CONNS:-64}
suffix=/v1.41/containers/json

have wrk || die "wrk is not installed (apt-get install -y wrk)"
build_berth
start_mock
url() { echo "http://127.0.0.1:$PORT_BERTH/api/endpoints/$BERTH_ENDPOINT/docker$suffix"; }

case $mode in
perf)
  have perf || die "perf is not installed (apt-get install -y linux-perf)"
  start_berth
  berth_setup
  # warm the pool and the allocator first
  "${PIN_CLIENT[@]}" wrk -t1 -c"$conns" -d2s -H "Authorization: Bearer $BERTH_TOKEN" "$(url)" >/dev/null
  graph=()
  [ "${CALLGRAPH:-0}" = 1 ] && graph=(--call-graph dwarf,16384)
  perf record -e cpu-clock -F 4999 "${graph[@]}" -p "$BERTH_PID" -o "$BENCH_DIR/profile.perf" -- sleep "$dur" \
    2>"$BENCH_DIR/profile.perf.err" &
  perf_pid=$!
  sleep 0.5
  "${PIN_CLIENT[@]}" wrk -t1 -c"$conns" -d"$((dur - 1))s" -H "Authorization: Bearer $BERTH_TOKEN" "$(url)" | grep -E 'Requests/sec|Latency'
  wait "$perf_pid" || die "perf record failed: $(cat "$BENCH_DIR/profile.perf.err")"
  note "own time by crate (top-level symbol path):"
  perf report -i "$BENCH_DIR/profile.perf" --no-children --stdio --sort sym 2>/dev/null |
    python3 -c '
import re, sys, collections
by = collections.Counter()
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+\[.\]\s+(.*)", line)
    k = re.match(r"\s*([\d.]+)%\s+\[k\]\s+(.*)", line)
    if k: by["[kernel]"] += float(k.group(1)); continue
    if not m: continue
    sym = m.group(2).lstrip("<").replace("_<", "")
    crate = re.split(r"::|<| ", sym)[0] or "?"
    by[crate] += float(m.group(1))
for c, p in by.most_common(15): print(f"{p:6.1f}%  {c}")'
  note "hottest symbols (own time):"
  perf report -i "$BENCH_DIR/profile.perf" --no-children --stdio --sort dso,sym --percent-limit 0.7 2>/dev/null |
    grep -v '^#' | grep -v '^$' | cut -c1-160
  ;;
callgrind)
  have valgrind || die "valgrind is not installed (apt-get install -y valgrind)"
  start_berth
  berth_setup
  token=$BERTH_TOKEN
  endpoint=$BERTH_ENDPOINT
  kill "$BERTH_PID"
  sleep 0.5
  # the same data directory (admin, endpoint), now under callgrind
  rm -f "$BENCH_DIR/profile.callgrind"
  valgrind --tool=callgrind --callgrind-out-file="$BENCH_DIR/profile.callgrind" \
    "$BIN/berth" --bind "127.0.0.1:$PORT_BERTH" --bind-https off --data "$BENCH_DIR/berth-data" \
    --workers 1 --log-level "info,berth::access=off" >"$BENCH_DIR/berth-callgrind.log" 2>&1 &
  vg=$!
  echo $vg >"$BENCH_DIR/berth-callgrind.pid"
  _started+=("$BENCH_DIR/berth-callgrind.pid")
  for ((i = 0; i < 600; i++)); do curl -fsS "http://127.0.0.1:$PORT_BERTH/api/status" >/dev/null 2>&1 && break; sleep 0.1; done
  # warm-up (pool, allocator), then count from zero
  "${PIN_CLIENT[@]}" wrk -t1 -c4 -d3s -H "Authorization: Bearer $token" "$(url)" >/dev/null
  callgrind_control --zero "$vg" >/dev/null
  out=$("${PIN_CLIENT[@]}" wrk -t1 -c4 -d"${dur}s" -H "Authorization: Bearer $token" "$(url)")
  requests=$(awk '/requests in/{print $1}' <<<"$out")
  kill -INT "$vg"
  wait "$vg" 2>/dev/null || true
  callgrind_annotate --inclusive=no "$BENCH_DIR/profile.callgrind" 2>/dev/null | head -40
  total=$(callgrind_annotate "$BENCH_DIR/profile.callgrind" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
  note "instructions per request (collected parts only): $((total / requests))"
  ;;
*) die "MODE is perf or callgrind" ;;
esac
