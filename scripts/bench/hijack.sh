#!/usr/bin/env bash
# Hijack benchmark (docker attach / exec): many idle hijacked sessions held
# through Berth at once (resident memory and file descriptors per session),
# then the byte rate through one busy session against the same session on
# the backend's unix socket direct.
#
# Each session is `POST /containers/{id}/attach` with `Upgrade: tcp`,
# answered 101 by the mock engine, which then echoes. After the hold every
# session must still echo a probe and close cleanly (the engine's `bye`).
#
# A hijacked session holds two descriptors in Berth (client and engine
# sockets), so SESSIONS is capped at what `ulimit -n` allows (raised to the
# hard limit here); the cap is printed when it bites.
#
# BERTH_B=/path/to/berth adds a second Berth build (A/B, e.g. before and
# after a change) to the busy-session rounds, interleaved with the others,
# as the row `berth-b`; the idle sessions are measured on the first only.
#
# Usage: scripts/bench/hijack.sh
# Knobs: SESSIONS (10000), HOLD (10 s), RATE_MB (2048), ROUNDS (3), SKIP_BUILD=1,
#        BERTH_BIN=/path (measure that build), BERTH_B=/path (A/B)
source "$(dirname "$0")/lib.sh"

want=${SESSIONS:-10000}
hold=${HOLD:-10}
rate_mb=${RATE_MB:-2048}
rounds=${ROUNDS:-3}

# Root (or CAP_SYS_RESOURCE) may raise the hard limit too; others get
# their hard limit.
need=$((want * 2 + 1000))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then ulimit -Hn "$need" 2>/dev/null || true; fi
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
ulimit -n "$hard" 2>/dev/null || true
soft=$(ulimit -n)
fit=$(((soft - 200) / 2))
sessions=$want
if [ "$fit" -lt "$want" ]; then
  sessions=$fit
  note "SESSIONS capped at $sessions: Berth needs 2 descriptors per session and 'ulimit -n' allows $soft (hard limit $hard)"
fi

build_berth
build_loadgen
start_mock
start_berth --max-tunnels "$((sessions + 100))"
berth_setup
note "$(machine_line)"

prefix="/api/endpoints/$BERTH_ENDPOINT/docker"
attach="/containers/0123456789ab/attach?stream=1&stdin=1&stdout=1"
berth_target=(--tcp "127.0.0.1:$PORT_BERTH" --token "$BERTH_TOKEN" --path "$prefix$attach")
direct_target=(--unix "$MOCK_SOCK" --path "$attach")
# The same session on the backend's TCP port: the client's transport to a
# proxy, so the cost of loopback TCP shows apart from Berth's.
tcp_target=(--tcp "127.0.0.1:$PORT_FLOOR" --path "$attach")

targets=(direct direct-tcp berth)
if [ -n "${BERTH_B:-}" ]; then
  main_token=$BERTH_TOKEN main_endpoint=$BERTH_ENDPOINT
  start_berth_variant b "$BERTH_B" 1 --max-tunnels 100
  b_pid=$VARIANT_PID
  b_target=(--tcp "127.0.0.1:$VARIANT_PORT" --token "$BERTH_TOKEN" --path "/api/endpoints/$BERTH_ENDPOINT/docker$attach")
  BERTH_TOKEN=$main_token BERTH_ENDPOINT=$main_endpoint
  targets+=(berth-b)
fi

# Warm-up: the runtime's and allocator's first-use growth is not per session.
"${PIN_CLIENT[@]}" "$BIN/loadgen" hijack-idle "${berth_target[@]}" --sessions 200 --hold 0 >/dev/null
sleep 1
read -r _ rss0 < <(mem_kib "$BERTH_PID")
fd0=$(fd_count "$BERTH_PID")

out="$BENCH_DIR/hijack-idle.out"
"${PIN_CLIENT[@]}" "$BIN/loadgen" hijack-idle "${berth_target[@]}" --sessions "$sessions" --hold "$hold" >"$out" 2>&1 &
lg=$!
for ((i = 0; i < 600; i++)); do # up to 5 minutes to open them
  grep -q '^READY' "$out" && break
  kill -0 "$lg" 2>/dev/null || break
  sleep 0.5
done
grep -q '^READY' "$out" || { cat "$out" >&2; die "sessions did not open"; }
sleep 1
read -r hwm1 rss1 < <(mem_kib "$BERTH_PID")
fd1=$(fd_count "$BERTH_PID")
tunnels=$(curl -fsS -H "Authorization: Bearer $BERTH_TOKEN" "http://127.0.0.1:$PORT_BERTH/metrics" | awk '$1=="berth_tunnels_open"{print $2}')
wait "$lg" || { cat "$out" >&2; die "idle sessions failed"; }
result=$(tail -1 "$out")
read -r _ rss2 < <(mem_kib "$BERTH_PID")

results=$(mktemp)
n_targets=${#targets[@]}
for ((r = 1; r <= rounds; r++)); do
  # Each round starts one target further on, so none always follows the same one.
  for ((k = 0; k < n_targets; k++)); do
    who=${targets[$(((k + r - 1) % n_targets))]}
    case $who in
    direct) tgt=("${direct_target[@]}") ;;
    direct-tcp) tgt=("${tcp_target[@]}") ;;
    berth) tgt=("${berth_target[@]}") ;;
    berth-b) tgt=("${b_target[@]}") ;;
    esac
    # The proxy's CPU time over the round (user + system, clock ticks):
    # a count, steadier than the byte rate on a shared machine.
    pid=
    case $who in berth) pid=$BERTH_PID ;; berth-b) pid=$b_pid ;; esac
    [ -n "$pid" ] && t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    line=$("${PIN_CLIENT[@]}" "$BIN/loadgen" hijack-rate "${tgt[@]}" --bytes $((rate_mb * 1024 * 1024)))
    [ -n "$pid" ] && line="$line cpu_ticks=$(($(awk '{print $14 + $15}' "/proc/$pid/stat") - t0))"
    echo "$who $line" | tee -a "$results" >&2
  done
done

python3 - "$results" "$sessions" "$rss0" "$rss1" "$rss2" "$fd0" "$fd1" "$tunnels" "$result" <<'EOF'
import os, statistics, sys
path, n, rss0, rss1, rss2, fd0, fd1, tunnels, result = sys.argv[1:]
n, rss0, rss1, rss2, fd0, fd1 = int(n), int(rss0), int(rss1), int(rss2), int(fd0), int(fd1)
print(f"idle sessions held: {n} ({result}); berth_tunnels_open={tunnels}")
print(f"berth RSS: {rss0/1024:.1f} MiB before, {rss1/1024:.1f} MiB with {n} sessions, {rss2/1024:.1f} MiB after they closed")
print(f"per session: {(rss1 - rss0) * 1024 / n:.0f} bytes resident, {(fd1 - fd0) / n:.2f} descriptors")
d = {}
cpu = {}
hz = os.sysconf("SC_CLK_TCK")
for line in open(path):
    f = line.split()
    kv = dict(x.split("=") for x in f[1:])
    d.setdefault(f[0], []).append(float(kv["mib_per_s"]))
    if "cpu_ticks" in kv:
        # CPU seconds of the proxy per GiB moved each way
        cpu.setdefault(f[0], []).append(int(kv["cpu_ticks"]) / hz / (int(kv["bytes"]) / 2**30))
ratios = [b / a for a, b in zip(d["direct"], d["berth"])]
tcp = [b / a for a, b in zip(d["direct-tcp"], d["berth"])]
print(f"one busy session: direct {statistics.median(d['direct']):.0f} MiB/s (unix), "
      f"direct-tcp {statistics.median(d['direct-tcp']):.0f} MiB/s, berth {statistics.median(d['berth']):.0f} MiB/s "
      f"(min-max {min(d['berth']):.0f}-{max(d['berth']):.0f})")
print(f"berth / direct: {statistics.median(ratios):.2f} (rounds: " + " ".join(f"{r:.2f}" for r in ratios) + ")"
      f"; berth / direct-tcp: {statistics.median(tcp):.2f} (rounds: " + " ".join(f"{r:.2f}" for r in tcp) + ")")
for who, v in cpu.items():
    print(f"{who} CPU: {statistics.median(v):.2f} s per GiB each way (rounds: " + " ".join(f"{x:.2f}" for x in v) + ")")
if "berth-b" in d:
    rb = [b / a for a, b in zip(d["direct"], d["berth-b"])]
    rbt = [b / a for a, b in zip(d["direct-tcp"], d["berth-b"])]
    ab = [a / b for a, b in zip(d["berth"], d["berth-b"])]
    print(f"berth-b: {statistics.median(d['berth-b']):.0f} MiB/s (min-max {min(d['berth-b']):.0f}-{max(d['berth-b']):.0f}); "
          f"berth-b / direct: {statistics.median(rb):.2f}, / direct-tcp: {statistics.median(rbt):.2f}; "
          f"berth / berth-b: {statistics.median(ab):.2f} (rounds: " + " ".join(f"{r:.2f}" for r in ab) + ")")
EOF
rm -f "$results"
