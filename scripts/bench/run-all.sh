#!/usr/bin/env bash
# Berth's whole benchmark harness in one command (docs/PERFORMANCE.md):
#   1. cargo bench     criterion micro-benchmarks of the hot path (--bench hot_path)
#   2. defaults.sh     the headline: small requests as users run them, Berth's and nginx's defaults
#   3. load.sh         small requests: Berth vs floor, nginx, HAProxy+JWT, hyper-jwt
#   4. cpu-cost.sh     CPU time per request of each proxy (the steadier measure)
#   5. stream.sh       multi-GB download and upload, peak memory
#   6. hijack.sh       10,000 idle attach sessions, one busy session
#   7. login-storm.sh  proxied p99 with and without a stream of logins
#   8. replicas.sh     proxied throughput on PostgreSQL vs embedded; change-feed lag
#   9. endpoint-memory.sh memory per registered endpoint (10,000 on one socket)
#  10. many-hosts.sh   10,000 endpoints, half dead: load over 1,000 vs one,
#                      memory per endpoint and pooled connection, live p99
#                      with the health checker busy on the dead half
# Each step's output is kept in $OUT (default /tmp/berth-bench-results/<date>).
# Takes about 30 minutes on a 2-core machine (27 on 2026-12-05). Every step stops by itself.
#
# Usage: scripts/bench/run-all.sh            everything
#        STEPS="load stream" scripts/bench/run-all.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${OUT:-/tmp/berth-bench-results/$(date -u +%Y%m%dT%H%MZ)}
steps=${STEPS:-micro defaults load cpu-cost stream hijack login-storm replicas endpoint-memory many-hosts}
mkdir -p "$out"
echo "results in $out" >&2
for step in $steps; do
  echo "=== $step ===" >&2
  case $step in
  micro) (cd "$repo" && cargo bench --bench hot_path -- --warm-up-time 1 --measurement-time 3) >"$out/micro.txt" 2>&1 ;;
  defaults) "$here/defaults.sh" >"$out/defaults.txt" 2>&1 ;;
  load) SKIP_BUILD=1 "$here/load.sh" >"$out/load.txt" 2>&1 ;;
  cpu-cost) SKIP_BUILD=1 "$here/cpu-cost.sh" >"$out/cpu-cost.txt" 2>&1 ;;
  stream) SKIP_BUILD=1 "$here/stream.sh" >"$out/stream.txt" 2>&1 ;;
  hijack) SKIP_BUILD=1 "$here/hijack.sh" >"$out/hijack.txt" 2>&1 ;;
  login-storm) SKIP_BUILD=1 "$here/login-storm.sh" >"$out/login-storm.txt" 2>&1 ;;
  replicas) SKIP_BUILD=1 "$here/replicas.sh" >"$out/replicas.txt" 2>&1 ;;
  endpoint-memory) SKIP_BUILD=1 "$here/endpoint-memory.sh" >"$out/endpoint-memory.txt" 2>&1 ;;
  many-hosts) SKIP_BUILD=1 "$here/many-hosts.sh" >"$out/many-hosts.txt" 2>&1 ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
  esac
  # the summary is the tail of each step's output
  tail -n 12 "$out/$step.txt" >&2
done
