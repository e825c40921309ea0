#!/usr/bin/env bash
# Streaming benchmark: a multi-GB download (`docker logs`/`export`/`save`
# shape) and a multi-GB upload (build context / `docker load` shape)
# through Berth, against the same transfer straight from the backend's
# unix socket, with the same client (benches/loadgen.rs), rounds
# interleaved. Berth's peak resident memory (VmHWM, reset between sizes
# through /proc/PID/clear_refs) is taken for a small and a large size, to
# show it does not grow with the size of the transfer.
#
# Usage: scripts/bench/stream.sh
# Knobs: SIZES_MB ("256 4096": the last is the throughput size), ROUNDS (3),
#        CHUNK (65536: the backend's frame size), SKIP_BUILD=1
source "$(dirname "$0")/lib.sh"

sizes=(${SIZES_MB:-256 4096})
rounds=${ROUNDS:-3}
chunk=${CHUNK:-65536}

build_berth
build_loadgen
start_mock
start_berth
berth_setup

berth_target=(--tcp "127.0.0.1:$PORT_BERTH" --token "$BERTH_TOKEN")
direct_target=(--unix "$MOCK_SOCK")
prefix="/api/endpoints/$BERTH_ENDPOINT/docker"
note "$(machine_line)"
note "servers on cpu $SERVER_CPUS, client on cpu $CLIENT_CPUS; sizes ${sizes[*]} MiB, $rounds rounds at the largest"

results=$(mktemp)
# $1 label (direct|berth), $2 download|upload, $3 bytes
one() {
  local who=$1 what=$2 bytes=$3 out
  local -a tgt
  local p
  if [ "$who" = direct ]; then tgt=("${direct_target[@]}"); p=""; else tgt=("${berth_target[@]}"); p=$prefix; fi
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
    for what in download upload; do
      one direct "$what" "$bytes"
      one berth "$what" "$bytes"
    done
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
print(f"{'transfer':10} {'size_MiB':>8} {'direct_MiB/s':>13} {'berth_MiB/s':>12} {'ratio':>6}  per-round ratios")
for (what, nbytes), d in sorted(rows.items()):
    if "direct" not in d or "berth" not in d: continue
    ratios = [b / a for a, b in zip(d["direct"], d["berth"])]
    print(f"{what:10} {nbytes >> 20:8} {statistics.median(d['direct']):13.0f} {statistics.median(d['berth']):12.0f} "
          f"{statistics.median(ratios):6.2f}  " + " ".join(f"{r:.2f}" for r in ratios))
for mb, m in mem:
    print(f"berth peak RSS (VmHWM) over the {mb} MiB transfers: {int(m['hwm_kib']) / 1024:.1f} MiB (RSS after: {int(m['rss_kib']) / 1024:.1f} MiB)")
EOF
rm -f "$results"
