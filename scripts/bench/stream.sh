#!/usr/bin/env bash
# Streaming benchmark: a multi-GB download (`docker logs`/`export`/`save`
# shape) and a multi-GB upload (build context / `docker load` shape)
# through Berth, against the same transfer straight from the backend, with
# the same client (crates/berth-testkit/src/bin/loadgen.rs), rounds interleaved:
#   direct      the backend's unix socket (what the proxies forward to)
#   direct-tcp  the backend's TCP port: the same transport as a client of a
#               proxy, so the cost of TCP on loopback shows apart from Berth's
#   berth       Berth, Bearer JWT
#   nginx, hyper-jwt  the anchors (download only; ANCHORS=0 leaves them out)
# Berth's peak resident memory (VmHWM, reset between sizes through
# /proc/PID/clear_refs) is taken for a small and a large size, to show it
# does not grow with the size of the transfer.
#
# The CPU time each Berth spends on a transfer (utime and stime of
# /proc/PID/stat around it) is printed per GiB, user and system apart: on a
# shared machine it is the count that holds when the rates move.
#
# BERTH_B=/path/to/berth adds a second Berth build (A/B, e.g. before and
# after a change), run interleaved with the others as the row `berth-b`.
#
# Usage: scripts/bench/stream.sh
# Knobs: SIZES_MB ("256 4096": the last is the throughput size), ROUNDS (3),
#        CHUNK (65536: the backend's frame size), ANCHORS (1), SKIP_BUILD=1,
#        LENGTH=1 (downloads carry a Content-Length instead of chunked
#        framing), BERTH_B=/path (A/B), EXTRA_FLAGS (more berth flags)
source "$(dirname "$0")/lib.sh"

sizes=(${SIZES_MB:-256 4096})
rounds=${ROUNDS:-3}
chunk=${CHUNK:-65536}

build_berth
build_loadgen
start_mock
# shellcheck disable=SC2086 # EXTRA_FLAGS holds separate berth flags
start_berth ${EXTRA_FLAGS:-}
berth_setup
a_pid=$BERTH_PID

prefix="/api/endpoints/$BERTH_ENDPOINT/docker"
jwt=$(anchor_jwt)
declare -A tgt_of pre_of
tgt_of[direct]="--unix $MOCK_SOCK"
pre_of[direct]=""
tgt_of[direct-tcp]="--tcp 127.0.0.1:$PORT_FLOOR"
pre_of[direct-tcp]=""
tgt_of[berth]="--tcp 127.0.0.1:$PORT_BERTH --token $BERTH_TOKEN"
pre_of[berth]=$prefix
who_down=(direct direct-tcp berth)
who_up=(direct direct-tcp berth)
declare -A pid_of=([berth]=$a_pid)
if [ -n "${BERTH_B:-}" ]; then
  a_token=$BERTH_TOKEN a_endpoint=$BERTH_ENDPOINT
  # shellcheck disable=SC2086
  start_berth_variant b "$BERTH_B" 1 ${EXTRA_FLAGS:-}
  pid_of[berth-b]=$VARIANT_PID
  tgt_of[berth-b]="--tcp 127.0.0.1:$VARIANT_PORT --token $BERTH_TOKEN"
  pre_of[berth-b]="/api/endpoints/$BERTH_ENDPOINT/docker"
  BERTH_TOKEN=$a_token BERTH_ENDPOINT=$a_endpoint
  who_down+=(berth-b)
  who_up+=(berth-b)
fi
length=""
[ "${LENGTH:-0}" = 1 ] && length="&length=1"
if [ "${ANCHORS:-1}" = 1 ]; then
  if start_nginx; then
    tgt_of[nginx]="--tcp 127.0.0.1:$PORT_NGINX"
    pre_of[nginx]=/api/endpoints/1/docker
    who_down+=(nginx)
  fi
  if start_hyper_jwt && wait_for curl -fsS -H "Authorization: Bearer $jwt" "http://127.0.0.1:$PORT_HYPER/api/endpoints/1/docker/_ping"; then
    tgt_of[hyper-jwt]="--tcp 127.0.0.1:$PORT_HYPER --token $jwt"
    pre_of[hyper-jwt]=/api/endpoints/1/docker
    who_down+=(hyper-jwt)
  fi
fi
note "$(machine_line)"
note "servers on cpu $SERVER_CPUS, client on cpu $CLIENT_CPUS; sizes ${sizes[*]} MiB, $rounds rounds at the largest"

results=$(mktemp)
# CPU ticks of a process: "user system"
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# $1 target name, $2 download|upload, $3 bytes
one() {
  local who=$1 what=$2 bytes=$3 out pid=${pid_of[$1]:-} u0 s0 u1 s1 cpu=""
  local -a tgt
  read -r -a tgt <<<"${tgt_of[$who]}"
  local p=${pre_of[$who]}
  [ -n "$pid" ] && read -r u0 s0 < <(ticks "$pid")
  if [ "$what" = download ]; then
    out=$("${PIN_CLIENT[@]}" "$BIN/loadgen" download "${tgt[@]}" --path "$p/mock/stream?bytes=$bytes&chunk=$chunk$length" --bytes "$bytes")
  else
    out=$("${PIN_CLIENT[@]}" "$BIN/loadgen" upload "${tgt[@]}" --path "$p/mock/upload?hash=0" --bytes "$bytes")
  fi
  if [ -n "$pid" ]; then
    read -r u1 s1 < <(ticks "$pid")
    cpu=$(python3 -c "g=$bytes/2**30; print(f'user_s_per_gib={($u1-$u0)/$hz/g:.3f} sys_s_per_gib={($s1-$s0)/$hz/g:.3f}')")
  fi
  echo "$who $what $bytes $out $cpu" | tee -a "$results" >&2
}

for mb in "${sizes[@]}"; do
  bytes=$((mb * 1024 * 1024))
  echo 5 >"/proc/$BERTH_PID/clear_refs" 2>/dev/null || note "cannot reset VmHWM (no /proc/PID/clear_refs): peaks accumulate"
  n=1
  [ "$mb" = "${sizes[-1]}" ] && n=$rounds
  for ((r = 1; r <= n; r++)); do
    for who in "${who_down[@]}"; do one "$who" download "$bytes"; done
    for who in "${who_up[@]}"; do one "$who" upload "$bytes"; done
  done
  read -r hwm rss < <(mem_kib "$BERTH_PID")
  echo "mem $mb hwm_kib=$hwm rss_kib=$rss" | tee -a "$results" >&2
done

python3 - "$results" <<'EOF'
import statistics, sys
rows, mem, cpu = {}, [], {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "mem":
        mem.append((int(f[1]), dict(kv.split("=") for kv in f[2:])))
        continue
    who, what, nbytes = f[0], f[1], int(f[2])
    kv = dict(x.split("=") for x in f[3:])
    rows.setdefault((what, nbytes), {}).setdefault(who, []).append(float(kv["mib_per_s"]))
    if "user_s_per_gib" in kv:
        c = cpu.setdefault((what, nbytes, who), ([], []))
        c[0].append(float(kv["user_s_per_gib"]))
        c[1].append(float(kv["sys_s_per_gib"]))
print(f"{'transfer':9} {'MiB':>5} {'target':10} {'MiB/s':>7} {'min-max':>11} {'x_direct':>8} {'x_direct_tcp':>12}  per-round x_direct")
for (what, nbytes), d in sorted(rows.items()):
    for who, v in d.items():
        rd = [b / a for a, b in zip(d["direct"], v)]
        rt = [b / a for a, b in zip(d["direct-tcp"], v)] if "direct-tcp" in d else [float("nan")]
        print(f"{what:9} {nbytes >> 20:5} {who:10} {statistics.median(v):7.0f} {min(v):5.0f}-{max(v):<5.0f} "
              f"{statistics.median(rd):8.2f} {statistics.median(rt):12.2f}  " + " ".join(f"{r:.2f}" for r in rd))
        if who == "berth" and "berth-b" in d:
            ab = [a / b for a, b in zip(v, d["berth-b"])]
            print(f"{'':9} {'':5} berth / berth-b {statistics.median(ab):.2f}  per round " + " ".join(f"{r:.2f}" for r in ab))
for (what, nbytes, who), (u, s) in sorted(cpu.items()):
    print(f"{what:9} {nbytes >> 20:5} {who:10} CPU s per GiB: user {statistics.median(u):.3f} ({min(u):.3f}-{max(u):.3f}), "
          f"system {statistics.median(s):.3f} ({min(s):.3f}-{max(s):.3f}), total {statistics.median([a + b for a, b in zip(u, s)]):.3f}")
for mb, m in mem:
    print(f"berth peak RSS (VmHWM) over the {mb} MiB transfers: {int(m['hwm_kib']) / 1024:.1f} MiB (RSS after: {int(m['rss_kib']) / 1024:.1f} MiB)")
EOF
rm -f "$results"
