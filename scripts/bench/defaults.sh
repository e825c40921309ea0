#!/usr/bin/env bash
# Small requests as users run them: the headline row of docs/PERFORMANCE.md.
# load.sh with nothing pinned (Berth, nginx, the mock engine and wrk share
# both cores as the scheduler likes), Berth with its default flags (no
# --workers, access log on, written to a file) and nginx with its defaults
# (anchors/nginx-defaults.conf: worker_processes auto, access log on).
#
# Rows: berth (the default: one runtime per core), and for comparison in the
# same run berth-ws (--scheduler work-stealing), berth-w1 (--workers 1) and,
# when BERTH_B=/path/to/other/berth is given, berth-b (that build, its own
# defaults, e.g. main before a change). HAProxy and hyper-jwt are left out
# (their configurations are pinned single-process anchors); NO_NGINX=1
# leaves nginx out too.
#
# Usage: scripts/bench/defaults.sh      Knobs: ROUNDS (5), DURATION (8s), CONNS (64), BERTH_B
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export SERVER_CPUS= CLIENT_CPUS= BERTH_WORKERS= NGINX_CONF=nginx-defaults.conf HYPER_JWT=0 NO_HAPROXY=1
bin=${BENCH_DIR:-/tmp/berth-bench-run}/bin
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  (cd "$here/../.." && cargo build --release -q -p berth -p berth-testkit --bin berth --bin berth-mock-docker)
  mkdir -p "$bin"
  cp -f "${CARGO_TARGET_DIR:-$here/../../target}/release/berth" "${CARGO_TARGET_DIR:-$here/../../target}/release/berth-mock-docker" "$bin/"
fi
cp -f "$bin/berth" "$bin/berth-default"
variants="berth=$bin/berth-default berth-ws=$bin/berth-default berth-w1=$bin/berth-default"
[ -n "${BERTH_B:-}" ] && variants="$variants berth-b=$BERTH_B"
export FLAGS_berth_ws="--scheduler work-stealing" FLAGS_berth_w1="--workers 1"
export BERTH_VARIANTS=$variants ACCESS_LOG_VARIANTS="berth berth-ws berth-w1 berth-b" SKIP_BUILD=1
exec "$here/load.sh"
