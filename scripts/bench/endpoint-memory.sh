#!/usr/bin/env bash
# Memory per registered endpoint (issue 20): N endpoints registered through
# the API on the mock engine's one unix socket, then Berth restarted on that
# data directory, as a user upgrading or rebooting would. Reports Berth's
# resident memory 3 s after start and once the first health round is over
# (all N checked), minus the same figure for a store with no endpoint,
# divided by N; the descriptors it holds; and the size and time of
# `GET /api/endpoints`.
#
# Usage: scripts/bench/endpoint-memory.sh
# Knobs: ENDPOINTS (10000), SETTLE (20 s after start for the second figure),
#        EXTRA_FLAGS (more berth flags), SKIP_BUILD=1, BERTH_BIN=/path (A/B)
source "$(dirname "$0")/lib.sh"

n=${ENDPOINTS:-10000}
settle=${SETTLE:-20}
read -r -a extra <<<"${EXTRA_FLAGS:-}"

build_berth
start_mock
note "$(machine_line 2>/dev/null || uname -r)"

data="$BENCH_DIR/berth-data"
base="http://127.0.0.1:$PORT_BERTH"

# Starts Berth on the existing $data (no wipe, unlike start_berth).
start_on_data() { start_berth_on berth "$PORT_BERTH" "$data" "${extra[@]}"; }

stop_berth() { stop_pid "$BERTH_PID" "$BENCH_DIR/berth.pid"; }

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }

# Samples RSS and descriptors 3 s after start and after $settle s.
measure() {
  local t0=$SECONDS
  start_on_data
  sleep 3
  M3=$(rss_kib "$BERTH_PID")
  F3=$(fds "$BERTH_PID")
  sleep $((settle - 3))
  MS=$(rss_kib "$BERTH_PID")
  FS=$(fds "$BERTH_PID")
}

# --- empty store (an admin user, no endpoint)
start_berth "${extra[@]}"
berth_setup
curl -fsS -X DELETE -H "Authorization: Bearer $BERTH_TOKEN" "$base/api/endpoints/$BERTH_ENDPOINT" >/dev/null
stop_berth
measure
rss0_3=$M3 rss0_s=$MS fd0_3=$F3 fd0_s=$FS
note "empty store: ${rss0_3} KiB at 3 s, ${rss0_s} KiB at ${settle} s"

# --- N endpoints, registered through the API (keep-alive, 4 clients)
BERTH_TOKEN=$(berth_login)
t=$SECONDS
awk -v n="$n" -v sock="$MOCK_SOCK" 'BEGIN { for (i = 0; i < n; i++) printf "e%06d unix://%s\n", i, sock }' >"$BENCH_DIR/endpoints.list"
register_endpoints "$BENCH_DIR/endpoints.list" "$BENCH_DIR/endpoints.ids"
reg_s=$((SECONDS - t))
note "$n endpoints registered in ${reg_s} s"
stop_berth

# --- restart on that data
measure
rssn_3=$M3 rssn_s=$MS fdn_3=$F3 fdn_s=$FS
BERTH_TOKEN=$(berth_login)
# Prometheus scrapes: the scrape-time gauges (pool, breaker) exist for
# every endpoint from then on.
curl -fsS -o /dev/null -H "Authorization: Bearer $BERTH_TOKEN" "$base/metrics"
list=$(curl -fsS -o /dev/null -w '%{size_download} %{time_total}' -H "Authorization: Bearer $BERTH_TOKEN" "$base/api/endpoints")
up=$(curl -fsS -H "Authorization: Bearer $BERTH_TOKEN" "$base/metrics" | awk '$1=="berth_endpoints{status=\"up\"}"{print $2}')
series=$(curl -fsS -H "Authorization: Bearer $BERTH_TOKEN" "$base/metrics" | grep -c 'endpoint="' || true)
rssn_x=$(rss_kib "$BERTH_PID")
stop_berth

python3 - "$n" "$rss0_3" "$rss0_s" "$rssn_3" "$rssn_s" "$fd0_3" "$fd0_s" "$fdn_3" "$fdn_s" "$list" "$up" "$series" "$settle" "$rssn_x" <<'EOF'
import sys
a = sys.argv[1:]
n = int(a[0]); r03, r0s, rn3, rns, f03, f0s, fn3, fns = map(int, a[1:9])
size, secs = a[9].split(); up, series, settle = a[10], a[11], a[12]; rnx = int(a[13])
print(f"endpoints: {n} (up after the first round: {up}); series with an endpoint label in /metrics: {series}")
print(f"RSS empty store: {r03/1024:.1f} MiB at 3 s, {r0s/1024:.1f} MiB at {settle} s")
print(f"RSS with {n}: {rn3/1024:.1f} MiB at 3 s, {rns/1024:.1f} MiB at {settle} s")
print(f"per endpoint: {(rn3-r03)*1024/n:.0f} bytes at 3 s, {(rns-r0s)*1024/n:.0f} bytes at {settle} s, "
      f"{(rnx-r0s)*1024/n:.0f} bytes after a /metrics scrape and GET /api/endpoints ({rnx/1024:.1f} MiB)")
print(f"descriptors: {f03} -> {fn3} at 3 s, {f0s} -> {fns} at {settle} s")
print(f"GET /api/endpoints: {int(size)/1e6:.1f} MB in {float(secs):.2f} s")
EOF
