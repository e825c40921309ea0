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
# Usage: scripts/bench/stream.sh
# Knobs: SIZES_MB ("256 4096": the last is the throughput size), ROUNDS (3),
#        CHUNK (65536: the backend's frame size), ANCHORS (1), SKIP_BUILD=1
source "$(dirname "$0")/lib.sh"

sizes=(${SIZES_MB:-256 4096})
rounds=${ROUNDS:-3}
chunk=${CHUNK:-65536}

build_berth
build_loadgen
start_mock
start_berth
berth_setup

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
# $1 target name, $2 download|upload, $3 bytes
one() {
  local who=$1 what=$2 bytes=$3 out
  local -a tgt
  read -r -a tgt <<<"${tgt_of[$who]}"
  local p=${pre_of[$who]}
  if [ "$what" = download ]; then
    out=$("${PIN_CLIENT[@]}" "$BIN/loadgen" download "${tgt[@]}" --path "$p/mock/stream?bytes=$bytes&chunk=$chunk" --bytes "$bytes")
  else
    out=$("${PIN_CLIENT[@]}" "$BIN/loadgen" upload "${tgt[@]}" --path "$p/mock/upload?hash=0" --bytes "$bytes")
  fi
  echo "$who $what $bytes $out" | tee -a "$results" >&2
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
rows, mem = {}, []
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "mem":
        mem.append((int(f[1]), dict(kv.split("=") for kv in f[2:])))
        continue
    who, what, nbytes = f[0], f[1], int(f[2])
    kv = dict(x.split("=") for x in f[3:])
    rows.setdefault((what, nbytes), {}).setdefault(who, []).append(float(kv["mib_per_s"]))
print(f"{'transfer':9} {'MiB':>5} {'target':10} {'MiB/s':>7} {'min-max':>11} {'x_direct':>8} {'x_direct_tcp':>12}  per-round x_direct")
for (what, nbytes), d in sorted(rows.items()):
    for who, v in d.items():
        rd = [b / a for a, b in zip(d["direct"], v)]
        rt = [b / a for a, b in zip(d["direct-tcp"], v)] if "direct-tcp" in d else [float("nan")]
        print(f"{what:9} {nbytes >> 20:5} {who:10} {statistics.median(v):7.0f} {min(v):5.0f}-{max(v):<5.0f} "
              f"{statistics.median(rd):8.2f} {statistics.median(rt):12.2f}  " + " ".join(f"{r:.2f}" for r in rd))
for mb, m in mem:
    print(f"berth peak RSS (VmHWM) over the {mb} MiB transfers: {int(m['hwm_kib']) / 1024:.1f} MiB (RSS after: {int(m['rss_kib']) / 1024:.1f} MiB)")
EOF
rm -f "$results"
