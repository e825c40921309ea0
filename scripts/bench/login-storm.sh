#!/usr/bin/env bash
# Login-storm benchmark: latency of proxied requests (wrk, Bearer JWT, as in
# load.sh) with and without a steady stream of logins running at the same
# time. bcrypt is deliberately slow (cost 10 by default, tens of ms of CPU a
# login) and runs on the blocking pool; the question is how much of that
# reaches the proxied requests' p99. Rounds alternate quiet / storm.
#
# MODE=spread (default): every login comes from a different client address
#   (X-Forwarded-For, Berth trusting 127.0.0.1), so the per-address limiter
#   lets each through and every one of them runs bcrypt.
# MODE=single: all logins from one address; the limiter (default burst 10,
#   1/s) answers most of them 429 without running bcrypt.
#
# Usage: scripts/bench/login-storm.sh
# Knobs: LOGIN_RATE (5 per second), MODE, ROUNDS (5), DURATION (8s), CONNS (64),
#        BCRYPT_COST (10), SKIP_BUILD=1
source "$(dirname "$0")/lib.sh"

rate=${LOGIN_RATE:-5}
mode=${MODE:-spread}
rounds=${ROUNDS:-5}
dur=${DURATION:-8s}
secs=${dur%s}
conns=${CONNS:-64}
cost=${BCRYPT_COST:-10}

have wrk || die "wrk is not installed (apt-get install -y wrk)"
build_berth
build_loadgen
start_mock
start_berth --bcrypt-cost "$cost" --trusted-proxies 127.0.0.1
berth_setup
url="http://127.0.0.1:$PORT_BERTH/api/endpoints/$BERTH_ENDPOINT/docker/v1.41/containers/json"
spread=()
[ "$mode" = spread ] && spread=(--spread)
note "$(machine_line)"
note "servers on cpu $SERVER_CPUS, wrk and logins on cpu $CLIENT_CPUS; $rounds rounds x (quiet, storm) x $dur; logins: $rate/s, mode $mode, bcrypt cost $cost"

results=$(mktemp)
measure() { # $1 label
  local out
  out=$("${PIN_CLIENT[@]}" wrk -t1 -c"$conns" -d"$dur" --latency -H "Authorization: Bearer $BERTH_TOKEN" "$url")
  if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then echo "$out" >&2; die "errors under load"; fi
  echo "$1 $(awk '/Requests\/sec/{print $2}' <<<"$out") $(awk '$1=="50%"{print $2}' <<<"$out") $(awk '$1=="99%"{print $2}' <<<"$out")"
}
for ((r = 1; r <= rounds; r++)); do
  measure quiet | tee -a "$results" >&2
  "${PIN_CLIENT[@]}" "$BIN/loadgen" logins --tcp "127.0.0.1:$PORT_BERTH" --path /api/auth --password "$ADMIN_PASSWORD" \
    --rate "$rate" --seconds "$secs" "${spread[@]}" >"$BENCH_DIR/logins.out" 2>&1 &
  lg=$!
  line=$(measure storm)
  wait "$lg" || { cat "$BENCH_DIR/logins.out" >&2; die "the login stream failed"; }
  echo "$line $(tail -1 "$BENCH_DIR/logins.out")" | tee -a "$results" >&2
done

python3 - "$results" <<'EOF'
import statistics, sys
def us(v):
    for unit, k in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if v.endswith(unit): return float(v[: -len(unit)]) * k
    return float(v)
q, s, extra = [], [], []
for line in open(sys.argv[1]):
    f = line.split()
    row = (float(f[1]), us(f[2]), us(f[3]))
    (q if f[0] == "quiet" else s).append(row)
    if f[0] == "storm": extra.append(dict(x.split("=") for x in f[4:]))
med = lambda rows, i: statistics.median(r[i] for r in rows)
print(f"{'':6} {'rps':>8} {'p50_us':>7} {'p99_us':>7}  p99 per round")
for name, rows in (("quiet", q), ("storm", s)):
    print(f"{name:6} {med(rows,0):8.0f} {med(rows,1):7.0f} {med(rows,2):7.0f}  " + " ".join(f"{r[2]:.0f}" for r in rows))
pairs = [b[2] / a[2] for a, b in zip(q, s)]
print(f"p99 storm/quiet: {statistics.median(pairs):.2f} (per round: " + " ".join(f"{x:.2f}" for x in pairs) + f"); rps storm/quiet: {med(s,0)/med(q,0):.2f}")
ok = sum(int(e.get("status_200", 0)) for e in extra); lim = sum(int(e.get("status_429", 0)) for e in extra)
print(f"logins during the storms: {ok} succeeded, {lim} refused by the limiter; login p50/p99 (last round): "
      f"{extra[-1].get('login_p50_ms')} / {extra[-1].get('login_p99_ms')} ms")
EOF
rm -f "$results"
