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
# Besides p99 storm / quiet, it prints the logins' own times over all the
# rounds (p50, p99 and max of the successful ones, and of every answer, so
# that quick refusals are seen as such), their statuses (200, 429 from the
# limiter, 503 from the hashing pool's admission control), and the load
# average at each round.
#
# Usage: scripts/bench/login-storm.sh
#        BERTH_VARIANTS="base=/path/to/berth new=/path/to/other" scripts/bench/login-storm.sh
#          (A/B: every round runs quiet then storm on each variant in turn,
#          each round starting one variant further on; ratios per variant)
# Knobs: LOGIN_RATE (5 per second), MODE, ROUNDS (5), DURATION (8s), CONNS (64),
#        BCRYPT_COST (10), SKIP_BUILD=1; SERVER_CPUS= CLIENT_CPUS= (empty)
#        and BERTH_WORKERS= (empty: --workers not given) and
#        ACCESS_LOG_VARIANTS="name ..." (access log on) run Berth as users do.
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
variants=()
if [ -n "${BERTH_VARIANTS:-}" ]; then
  for v in $BERTH_VARIANTS; do variants+=("$v"); done
else
  variants=("berth=$BIN/berth")
fi
declare -A url tok port
names=()
k=0
for v in "${variants[@]}"; do
  name=${v%%=*}
  start_berth_variant "$name" "${v#*=}" "$k" --bcrypt-cost "$cost" --trusted-proxies 127.0.0.1
  names+=("$name")
  port[$name]=$VARIANT_PORT
  url[$name]="http://127.0.0.1:$VARIANT_PORT/api/endpoints/$BERTH_ENDPOINT/docker/v1.41/containers/json"
  tok[$name]=$BERTH_TOKEN
  k=$((k + 1))
done
spread=()
[ "$mode" = spread ] && spread=(--spread)
note "$(machine_line)"
note "servers on cpu ${SERVER_CPUS:-any}, wrk and logins on cpu ${CLIENT_CPUS:-any}; workers ${BERTH_WORKERS:-default}; $rounds rounds x (quiet, storm) x $dur per variant (${names[*]}); logins: $rate/s, mode $mode, bcrypt cost $cost"

results=$(mktemp)
answers_dir=$(mktemp -d)
measure() { # $1 variant, $2 label
  local out
  out=$("${PIN_CLIENT[@]}" wrk -t1 -c"$conns" -d"$dur" --latency -H "Authorization: Bearer ${tok[$1]}" "${url[$1]}")
  if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then echo "$out" >&2; die "errors under load"; fi
  echo "$1 $2 $(awk '/Requests\/sec/{print $2}' <<<"$out") $(awk '$1=="50%"{print $2}' <<<"$out") $(awk '$1=="99%"{print $2}' <<<"$out") load1=$(cut -d' ' -f1 /proc/loadavg)"
}
n=${#names[@]}
for ((r = 1; r <= rounds; r++)); do
  for ((j = 0; j < n; j++)); do
    name=${names[$(((j + r - 1) % n))]}
    measure "$name" quiet | tee -a "$results" >&2
    "${PIN_CLIENT[@]}" "$BIN/loadgen" logins --tcp "127.0.0.1:${port[$name]}" --path /api/auth --password "$ADMIN_PASSWORD" \
      --rate "$rate" --seconds "$secs" "${spread[@]}" --answers "$answers_dir/$name" >"$BENCH_DIR/logins.out" 2>&1 &
    lg=$!
    line=$(measure "$name" storm)
    wait "$lg" || { cat "$BENCH_DIR/logins.out" >&2; die "the login stream failed"; }
    echo "$line $(tail -1 "$BENCH_DIR/logins.out")" | tee -a "$results" >&2
  done
done

python3 - "$results" "$answers_dir" <<'EOF'
import os, statistics, sys
def us(v):
    for unit, k in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if v.endswith(unit): return float(v[: -len(unit)]) * k
    return float(v)
pct = lambda v, p: sorted(v)[int((len(v) - 1) * p)] if v else float("nan")
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], []).append((f[1], float(f[2]), us(f[3]), us(f[4]), dict(x.split("=") for x in f[5:])))
for name, rs in rows.items():
    q = [r for r in rs if r[0] == "quiet"]
    s = [r for r in rs if r[0] == "storm"]
    med = lambda rows, i: statistics.median(r[i] for r in rows)
    print(f"== {name}")
    print(f"{'':6} {'rps':>8} {'p50_us':>7} {'p99_us':>7}  p99 per round")
    for label, part in (("quiet", q), ("storm", s)):
        print(f"{label:6} {med(part,1):8.0f} {med(part,2):7.0f} {med(part,3):7.0f}  " + " ".join(f"{r[3]:.0f}" for r in part))
    pairs = [b[3] / a[3] for a, b in zip(q, s)]
    rps = [b[1] / a[1] for a, b in zip(q, s)]
    print(f"p99 storm/quiet: {statistics.median(pairs):.2f} (per round: " + " ".join(f"{x:.2f}" for x in pairs)
          + f"); rps storm/quiet: {statistics.median(rps):.2f} (per round: " + " ".join(f"{x:.2f}" for x in rps) + ")")
    print("load average (1 min) after each quiet / storm period: " + " ".join(r[4]["load1"] for r in rs))
    print("login p50 / p99 ms per round (successful ones): " + " ".join(f"{r[4].get('login_p50_ms')}/{r[4].get('login_p99_ms')}" for r in s))
    path = os.path.join(sys.argv[2], name)
    answers = [(int(a), float(b)) for a, b in (l.split() for l in open(path))] if os.path.exists(path) else []
    by = {}
    for st, ms in answers: by.setdefault(st, []).append(ms)
    skipped = sum(int(r[4].get("skipped", 0)) for r in s)
    print(f"logins over all {len(s)} storms: {len(answers)} answered, {skipped} not sent (too many in flight); by status: "
          + " ".join(f"{st}={len(v)} (p50 {pct(v, .5):.0f} ms, p99 {pct(v, .99):.0f} ms, max {max(v):.0f} ms)" for st, v in sorted(by.items())))
    ok = by.get(200, [])
    print(f"login (200) p50 / p99 / max over all rounds: {pct(ok, .5):.0f} / {pct(ok, .99):.0f} / {max(ok, default=float('nan')):.0f} ms; "
          f"answered within 1 s: {sum(1 for _, ms in answers if ms <= 1000)} of {len(answers)}")
EOF
rm -rf "$results" "$answers_dir"
