#!/usr/bin/env bash
# Where Berth's CPU goes on a large body (stream.sh's transfers, one at a
# time): for a download and an upload through Berth,
#   - the system-call mix of Berth (strace -c -f: calls, bytes per read and
#     write, writev against write), on a smaller transfer since strace slows
#     every call down;
#   - context switches and CPU time (perf stat -e task-clock,
#     context-switches on the Berth pid during the transfer);
#   - perf samples (software clock) of Berth, own time by symbol, kernel
#     and user apart.
#
# Usage: scripts/bench/stream-profile.sh
# Knobs: MB (1024: perf/stat size), STRACE_MB (256), CHUNK (65536),
#        LENGTH=1 (Content-Length downloads), SKIP_BUILD=1,
#        BERTH_BIN=/path (profile that build), EXTRA_FLAGS (berth flags)
# Output: on stdout; raw data under $BENCH_DIR/stream-profile.*
source "$(dirname "$0")/lib.sh"

mb=${MB:-1024}
strace_mb=${STRACE_MB:-256}
chunk=${CHUNK:-65536}
length=""
[ "${LENGTH:-0}" = 1 ] && length="&length=1"

have perf || die "perf is not installed (apt-get install -y linux-perf)"
have strace || die "strace is not installed (apt-get install -y strace)"
build_berth
build_loadgen
start_mock
# shellcheck disable=SC2086 # EXTRA_FLAGS holds separate berth flags
start_berth ${EXTRA_FLAGS:-}
berth_setup
prefix="/api/endpoints/$BERTH_ENDPOINT/docker"
tgt=(--tcp "127.0.0.1:$PORT_BERTH" --token "$BERTH_TOKEN")
note "$(machine_line); load: $(cut -d' ' -f1-3 /proc/loadavg)"

# $1 download|upload, $2 MiB
transfer() {
  local bytes=$(($2 * 1024 * 1024))
  if [ "$1" = download ]; then
    "${PIN_CLIENT[@]}" "$BIN/loadgen" download "${tgt[@]}" --path "$prefix/mock/stream?bytes=$bytes&chunk=$chunk$length" --bytes "$bytes"
  else
    "${PIN_CLIENT[@]}" "$BIN/loadgen" upload "${tgt[@]}" --path "$prefix/mock/upload?hash=0" --bytes "$bytes"
  fi
}

# warm the pool and the allocator
transfer download 64 >/dev/null
transfer upload 64 >/dev/null

for what in download upload; do
  note "== $what: system calls over $strace_mb MiB (strace -c -f)"
  strace -c -f -p "$BERTH_PID" -o "$BENCH_DIR/stream-profile.strace.$what" 2>/dev/null &
  st=$!
  sleep 0.5
  transfer "$what" "$strace_mb" >&2
  sleep 0.2
  kill -INT "$st"
  wait "$st" 2>/dev/null || true
  sed -n '1,14p' "$BENCH_DIR/stream-profile.strace.$what"

  note "== $what: perf stat over $mb MiB"
  perf stat -e task-clock,context-switches,cpu-migrations,page-faults -p "$BERTH_PID" \
    -o "$BENCH_DIR/stream-profile.stat.$what" &
  ps_pid=$!
  sleep 0.3
  transfer "$what" "$mb"
  kill -INT "$ps_pid"
  wait "$ps_pid" 2>/dev/null || true
  grep -E 'task-clock|context-switches|migrations|faults' "$BENCH_DIR/stream-profile.stat.$what"

  note "== $what: perf record over $mb MiB, own time"
  # Without a command, perf stat and perf record run until SIGINT (with one,
  # they ignore it and wait for the command).
  perf record -e cpu-clock -F 4999 -g -p "$BERTH_PID" -o "$BENCH_DIR/stream-profile.perf.$what" \
    2>"$BENCH_DIR/stream-profile.perf.err" &
  pr=$!
  sleep 0.3
  transfer "$what" "$mb" >&2
  kill -INT "$pr"
  wait "$pr" 2>/dev/null || true
  perf report -i "$BENCH_DIR/stream-profile.perf.$what" --no-children --stdio --sort sym --percent-limit 1 -g none 2>/dev/null |
    grep -v '^#' | grep -v '^$' | cut -c1-150
  perf report -i "$BENCH_DIR/stream-profile.perf.$what" --no-children --stdio --sort sym -g none 2>/dev/null |
    awk '/%/ && /\[k\]/ {k += $1} /%/ && /\[\.\]/ {u += $1} END {printf "kernel %.1f%%, user %.1f%%\n", k, u}'
done
