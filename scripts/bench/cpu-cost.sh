#!/usr/bin/env bash
# CPU cost per proxied request: the steadier measure on a shared machine.
# Throughput swings with whatever else runs; the CPU time a proxy process
# spends per request it answered barely does. Used to judge hot-path
# changes (A/B between Berth builds) and to compare with the anchors.
#
# For each target, wrk loads it (same request as load.sh) while the proxy's
# CPU time (user + system, all threads, from /proc/PID/stat), its context
# switches (voluntary / involuntary, /proc/PID/task/*/status) and, when
# `perf` works, its system calls are counted over the middle of the run.
#
# Usage: scripts/bench/cpu-cost.sh
#        BERTH_VARIANTS="base=/path/to/berth new=/path/to/other" scripts/bench/cpu-cost.sh
# Knobs: TARGETS ("berth nginx haproxy hyper-jwt"; each variant replaces
#        "berth"), ROUNDS (3), DURATION (8), CONNS (64), SKIP_BUILD=1
source "$(dirname "$0")/lib.sh"

rounds=${ROUNDS:-3}
dur=${DURATION:-8}
conns=${CONNS:-64}
suffix=/v1.41/containers/json
read -r -a targets <<<"${TARGETS:-berth nginx haproxy hyper-jwt}"

have wrk || die "wrk is not installed (apt-get install -y wrk)"
build_berth
start_mock
declare -A url tok pids
variants=()
if [[ " ${targets[*]} " == *" berth "* ]]; then
  if [ -n "${BERTH_VARIANTS:-}" ]; then
    for v in $BERTH_VARIANTS; do variants+=("$v"); done
  else
    variants=("berth=$BIN/berth")
  fi
fi
k=0
for v in "${variants[@]}"; do
  name=${v%%=*}
  start_berth_variant "$name" "${v#*=}" "$k"
  url[$name]="http://127.0.0.1:$VARIANT_PORT/api/endpoints/$BERTH_ENDPOINT/docker$suffix"
  tok[$name]=$BERTH_TOKEN
  pids[$name]=$VARIANT_PID
  k=$((k + 1))
done
jwt=$(anchor_jwt)
order=()
for t in "${targets[@]}"; do
  case $t in
  berth) for v in "${variants[@]}"; do order+=("${v%%=*}"); done ;;
  nginx) if start_nginx; then
    sleep 0.3
    order+=(nginx)
    url[nginx]="http://127.0.0.1:$PORT_NGINX/api/endpoints/1/docker$suffix"
    tok[nginx]=none
    pids[nginx]=$(pgrep -P "$(cat "$BENCH_DIR/nginx-anchor.pid")" | tr '\n' ' ')
  fi ;;
  haproxy) if start_haproxy; then
    order+=(haproxy)
    url[haproxy]="http://127.0.0.1:$PORT_HAPROXY/api/endpoints/1/docker$suffix"
    tok[haproxy]=$jwt
    pids[haproxy]=$(cat "$BENCH_DIR/haproxy.pid")
  fi ;;
  hyper-jwt) if start_hyper_jwt; then
    order+=(hyper-jwt)
    url[hyper-jwt]="http://127.0.0.1:$PORT_HYPER/api/endpoints/1/docker$suffix"
    tok[hyper-jwt]=$jwt
    pids[hyper-jwt]=$(cat "$BENCH_DIR/hyper-jwt.pid")
    wait_for curl -fsS -H "Authorization: Bearer $jwt" "${url[hyper-jwt]}" || die "hyper-jwt does not answer"
  fi ;;
  esac
done

cpu_ticks() { # total utime+stime of the processes, in clock ticks
  local p t=0
  for p in $1; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo $t
}
ctx() { # voluntary and involuntary switches of every thread
  local p
  for p in $1; do cat /proc/"$p"/task/*/status; done |
    awk '/^voluntary_ctxt/{v+=$2} /^nonvoluntary_ctxt/{n+=$2} END{print v+0, n+0}'
}
perf_ok=0
perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1 && perf_ok=1
hz=$(getconf CLK_TCK)
mid=$((dur - 3))

note "$(machine_line)"
note "servers on cpu $SERVER_CPUS, wrk on cpu $CLIENT_CPUS; $rounds rounds x ${#order[@]} targets x ${dur}s, $conns connections"
results=$(mktemp)
for ((r = 1; r <= rounds; r++)); do
  for t in "${order[@]}"; do
    wout="$BENCH_DIR/cost-wrk.out"
    "${PIN_CLIENT[@]}" wrk -t1 -c"$conns" -d"${dur}s" -H "Authorization: Bearer ${tok[$t]}" "${url[$t]}" >"$wout" &
    w=$!
    sleep 1.5
    c0=$(cpu_ticks "${pids[$t]}")
    read -r v0 n0 < <(ctx "${pids[$t]}")
    t0=$(date +%s.%N)
    sys="-"
    if [ "$perf_ok" = 1 ]; then
      sys=$(perf stat -x, -e raw_syscalls:sys_enter -p "$(tr ' ' ',' <<<"${pids[$t]}" | sed 's/,$//')" -- sleep "$mid" 2>&1 >/dev/null |
        awk -F, '/raw_syscalls/{print $1}')
    else
      sleep "$mid"
    fi
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "${pids[$t]}")
    read -r v1 n1 < <(ctx "${pids[$t]}")
    wait "$w"
    rps=$(awk '/Requests\/sec/{print $2}' "$wout")
    grep -q 'Non-2xx\|Socket errors' "$wout" && { cat "$wout" >&2; die "$t returned errors"; }
    python3 - "$t" "$rps" "$t0" "$t1" "$c0" "$c1" "$hz" "$v0" "$v1" "$n0" "$n1" "$sys" <<'EOF' | tee -a "$results" >&2
import sys
t, rps, t0, t1, c0, c1, hz, v0, v1, n0, n1, sysc = sys.argv[1:]
n = float(rps) * (float(t1) - float(t0))
cpu = (int(c1) - int(c0)) / int(hz) * 1e6 / n
s = f"{float(sysc) / n:.2f}" if sysc not in ("-", "") else "-"
print(f"{t} {float(rps):.0f} {cpu:.2f} {(int(v1) - int(v0)) / n:.3f} {(int(n1) - int(n0)) / n:.3f} {s}")
EOF
  done
done

python3 - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, cpu, vol, inv, sysc = line.split()
    d = rows.setdefault(name, {"rps": [], "cpu": [], "vol": [], "inv": [], "sys": []})
    d["rps"].append(float(rps)); d["cpu"].append(float(cpu)); d["vol"].append(float(vol)); d["inv"].append(float(inv))
    if sysc != "-": d["sys"].append(float(sysc))
med = lambda v: statistics.median(v) if v else float("nan")
print(f"{'target':10} {'cpu_us/req':>10} {'min-max':>12} {'rps':>8} {'syscalls/req':>12} {'ctxsw vol/invol per req':>24}")
for n, d in rows.items():
    print(f"{n:10} {med(d['cpu']):10.1f} {min(d['cpu']):5.1f}-{max(d['cpu']):<6.1f} {med(d['rps']):8.0f} {med(d['sys']):12.2f} "
          f"{med(d['vol']):11.2f} / {med(d['inv']):.2f}")
EOF
rm -f "$results"
