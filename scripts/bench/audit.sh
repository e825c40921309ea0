#!/usr/bin/env bash
# The audit trail under load (issue 15): mutating Docker calls through the
# proxy with the audit of proxied calls on (the default) and off, side by
# side in one run, rounds interleaved.
#
#   floor      wrk straight to the mock backend (no proxy)
#   audit-on   Berth as a user starts it: every POST is queued for the trail
#   audit-off  Berth with --audit-proxy false
#   get-on, get-off  the same two with GET /_ping (what load.sh sends: reads
#              are never audited, so these should be equal)
#
# Requests: POST /v1.41/containers/bench/start (the mock answers 404 at
# once, so what is measured is the proxy and its audit, not Docker).
# Servers on core $SERVER_CPUS, wrk on core $CLIENT_CPUS.
#
# Usage: scripts/bench/audit.sh
# Knobs: ROUNDS (5), DURATION (5s), CONNS (64), SKIP_BUILD=1.
source "$(dirname "$0")/lib.sh"

rounds=${ROUNDS:-5}
dur=${DURATION:-5s}
conns=${CONNS:-64}

have wrk || die "wrk is not installed (apt-get install -y wrk)"
build_berth
start_mock
start_berth_variant on "$BIN/berth" 0
on_port=$VARIANT_PORT on_token=$BERTH_TOKEN on_endpoint=$BERTH_ENDPOINT
start_berth_variant off "$BIN/berth" 1 --audit-proxy false
off_port=$VARIANT_PORT off_token=$BERTH_TOKEN off_endpoint=$BERTH_ENDPOINT

post="$BENCH_DIR/post.lua"
echo 'wrk.method = "POST"' >"$post"
path=/v1.41/containers/bench/start
targets=(
  "floor|http://127.0.0.1:$PORT_FLOOR$path|none|-s $post"
  "audit-on|http://127.0.0.1:$on_port/api/endpoints/$on_endpoint/docker$path|$on_token|-s $post"
  "audit-off|http://127.0.0.1:$off_port/api/endpoints/$off_endpoint/docker$path|$off_token|-s $post"
  "get-on|http://127.0.0.1:$on_port/api/endpoints/$on_endpoint/docker/v1.41/_ping|$on_token"
  "get-off|http://127.0.0.1:$off_port/api/endpoints/$off_endpoint/docker/v1.41/_ping|$off_token"
)
note "$(machine_line)"
note "servers on cpu $SERVER_CPUS, wrk on cpu $CLIENT_CPUS; $rounds rounds x ${#targets[@]} targets x $dur, $conns connections"
results=$(mktemp)
wrk_rounds "$results" "${targets[@]}"

events=$(curl -fsS -H "Authorization: Bearer $on_token" "http://127.0.0.1:$on_port/metrics" |
  awk '/^berth_audit_events_total\{kind="docker"\}/{print $2} /^berth_audit_dropped_total /{print "dropped", $2}' | tr '\n' ' ')
note "audit-on wrote: $events"

summarize "$results" floor audit-on/audit-off get-on/get-off
note "audit-on/audit-off: every call audited (POST); get-on/get-off: the load benchmark's reads"
