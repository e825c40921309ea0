#!/usr/bin/env bash
# Small-request load benchmark: Berth with full authentication against the
# anchors, side by side in one run, rounds interleaved so that drift on a
# shared machine hits every target alike.
#
#   floor      wrk straight to the mock backend over TCP (no proxy: the limit here)
#   berth      Berth, Bearer JWT: verify, user + revocation check, endpoint lookup, access check
#   nginx      nginx reverse proxy to the same unix socket, no authentication
#   haproxy    HAProxy verifying an HS256 Bearer JWT on every request
#   hyper-jwt  the shared lean hyper anchor (JWT check only); HYPER_JWT=0 leaves it out
#
# The backend is Berth's own mock engine (berth-mock-docker), GET
# /v1.41/containers/json (~2 KB of JSON). The servers run on core
# $SERVER_CPUS, wrk on core $CLIENT_CPUS.
#
# Usage: scripts/bench/load.sh
# Knobs: ROUNDS (5), DURATION (8s), CONNS (64), THREADS (1), PATH_SUFFIX
#        (/v1.41/containers/json), BERTH_WORKERS (1), SKIP_BUILD=1,
#        RESULTS=FILE (raw per-round lines appended), BERTH_LOG_LEVEL,
#        BERTH_VARIANTS="name=/path/to/berth ..." (A/B: one row per build
#        instead of building the tree), NO_ANCHORS=1 (floor and Berth only),
#        NO_NGINX=1, NO_HAPROXY=1, NGINX_CONF (anchors/ file), FLAGS_<variant>;
#        SERVER_CPUS= CLIENT_CPUS= unpins everything (defaults.sh does).
source "$(dirname "$0")/lib.sh"

rounds=${ROUNDS:-5}
dur=${DURATION:-8s}
conns=${CONNS:-64}
threads=${THREADS:-1}
suffix=${PATH_SUFFIX:-/v1.41/containers/json}

have wrk || die "wrk is not installed (apt-get install -y wrk)"
have curl || die "curl is needed"
build_berth
start_mock
targets=("floor|http://127.0.0.1:$PORT_FLOOR$suffix|none")
if [ -z "${BERTH_VARIANTS:-}" ]; then
  start_berth
  berth_setup
  targets+=("berth|http://127.0.0.1:$PORT_BERTH/api/endpoints/$BERTH_ENDPOINT/docker$suffix|$BERTH_TOKEN")
else
  # A/B: several Berth builds side by side, one row each ("name=path ...").
  k=0
  for v in $BERTH_VARIANTS; do
    start_berth_variant "${v%%=*}" "${v#*=}" "$k"
    targets+=("${v%%=*}|http://127.0.0.1:$VARIANT_PORT/api/endpoints/$BERTH_ENDPOINT/docker$suffix|$BERTH_TOKEN")
    k=$((k + 1))
  done
fi
jwt=$(anchor_jwt)
[ "${NO_ANCHORS:-0}" = 1 ] && HYPER_JWT=0
if [ "${NO_ANCHORS:-0}" != 1 ] && [ "${NO_NGINX:-0}" != 1 ] && start_nginx; then targets+=("nginx|http://127.0.0.1:$PORT_NGINX/api/endpoints/1/docker$suffix|none"); fi
if [ "${NO_ANCHORS:-0}" != 1 ] && [ "${NO_HAPROXY:-0}" != 1 ] && start_haproxy; then targets+=("haproxy|http://127.0.0.1:$PORT_HAPROXY/api/endpoints/1/docker$suffix|$jwt"); fi
if start_hyper_jwt; then targets+=("hyper-jwt|http://127.0.0.1:$PORT_HYPER/api/endpoints/1/docker$suffix|$jwt"); fi
sleep 0.5

for t in "${targets[@]}"; do # every target must answer 200 before anything is measured
  IFS='|' read -r name url tok <<<"$t"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "$url" || true)
  if [ "$name" = hyper-jwt ] && [ "$code" != 200 ]; then wait_for curl -fsS -H "Authorization: Bearer $tok" "$url" && code=200; fi
  [ "$code" = 200 ] || die "$name answered $code for $url"
done

note "$(machine_line)"
note "servers on cpu ${SERVER_CPUS:-any}, wrk on cpu ${CLIENT_CPUS:-any}; $rounds rounds x ${#targets[@]} targets x $dur, $conns connections"
results=$(mktemp)
for ((r = 1; r <= rounds; r++)); do
  # each round starts one target further on, so no target always runs
  # right after the floor (the heaviest load) or always first
  n=${#targets[@]}
  for ((j = 0; j < n; j++)); do
    t=${targets[$(((j + r - 1) % n))]}
    IFS='|' read -r name url tok <<<"$t"
    out=$("${PIN_CLIENT[@]}" wrk -t"$threads" -c"$conns" -d"$dur" --latency -H "Authorization: Bearer $tok" "$url")
    if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
      echo "$name returned errors under load:" >&2
      echo "$out" >&2
      exit 1
    fi
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    p50=$(awk '$1=="50%"{print $2}' <<<"$out")
    p99=$(awk '$1=="99%"{print $2}' <<<"$out")
    echo "$name $r $rps $p50 $p99" | tee -a "$results" >&2
  done
done
[ -n "${RESULTS:-}" ] && cat "$results" >>"$RESULTS"
if [ -n "${BERTH_PID:-}" ]; then note "berth peak RSS: $(mem_kib "$BERTH_PID" | awk '{print $1}') KiB"; fi

python3 - "$results" <<'EOF'
import statistics, sys
def us(v):
    for unit, k in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if v.endswith(unit): return float(v[: -len(unit)]) * k
    return float(v)
rows = {}
for line in open(sys.argv[1]):
    name, _, rps, p50, p99 = line.split()
    d = rows.setdefault(name, {"rps": [], "p50": [], "p99": []})
    d["rps"].append(float(rps)); d["p50"].append(us(p50)); d["p99"].append(us(p99))
med = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in rows.items()}
def ratio(n, ref, key="rps"):
    return f"{med[n][key] / med[ref][key]:.2f}" if ref in med else "-"
print(f"{'target':10} {'rps':>8} {'rps min-max':>15} {'p50_us':>7} {'p99_us':>7} {'p99 min-max':>13} {'x_floor':>7} {'x_nginx':>7} {'x_haproxy':>9} {'p99/nginx':>9}")
for n, m in med.items():
    d = rows[n]
    print(f"{n:10} {m['rps']:8.0f} {min(d['rps']):7.0f}-{max(d['rps']):<7.0f} {m['p50']:7.0f} {m['p99']:7.0f} "
          f"{min(d['p99']):6.0f}-{max(d['p99']):<6.0f} {ratio(n, 'floor'):>7} {ratio(n, 'nginx'):>7} {ratio(n, 'haproxy'):>9} {ratio(n, 'nginx', 'p99'):>9}")
# per-round ratios of Berth to nginx and HAProxy (same round, so drift cancels)
for n in rows:
    if n in ("floor", "nginx", "haproxy", "hyper-jwt"):
        continue
    for ref in ("nginx", "haproxy"):
        if ref in rows:
            rs = [b / a for b, a in zip(rows[n]["rps"], rows[ref]["rps"])]
            print(f"{n}/{ref} rps per round: " + " ".join(f"{x:.2f}" for x in rs) + f"  (median {statistics.median(rs):.2f})")
    if "nginx" in rows:
        ps = [b / a for b, a in zip(rows[n]["p99"], rows["nginx"]["p99"])]
        print(f"{n}/nginx p99 per round: " + " ".join(f"{x:.2f}" for x in ps) + f"  (median {statistics.median(ps):.2f})")
EOF
rm -f "$results"
