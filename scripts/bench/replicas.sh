#!/usr/bin/env bash
# Proxied throughput on the PostgreSQL store beside the embedded one (issue
# 16), rounds interleaved in one run, and the change feed's lag while the
# proxy is under load.
#
#   floor     wrk straight to the mock backend (no proxy)
#   embedded  Berth on its embedded store (as a user starts it by default)
#   postgres  Berth replica A on a throwaway PostgreSQL cluster, while
#             replica B (same database) writes a tag every 50 ms: A applies
#             each through its change feed during the load
#
# The request path never touches the store, so postgres/embedded should be
# within the rounds' spread. The lag is A's berth_store_feed_lag_seconds
# (from B's commit to A's memory), read after the run.
#
# Usage: scripts/bench/replicas.sh
# Knobs: ROUNDS (5), DURATION (5s), CONNS (64), SKIP_BUILD=1.
source "$(dirname "$0")/lib.sh"

rounds=${ROUNDS:-5}
dur=${DURATION:-5s}
conns=${CONNS:-64}

have wrk || die "wrk is not installed (apt-get install -y wrk)"
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort | tail -1)
[[ -x $pgbin/initdb ]] || die "PostgreSQL is not installed (apt-get install -y postgresql)"

# A throwaway cluster on loopback, as the postgres user when run as root.
as_pg=()
[[ $(id -u) == 0 ]] && as_pg=(runuser -u postgres --)
PORT_PG=$((BASE_PORT + 30))
pgdir="$BENCH_DIR/pg"
rm -rf "$pgdir" && mkdir -p "$pgdir"
[[ $(id -u) == 0 ]] && chown postgres:postgres "$pgdir"
"${as_pg[@]}" "$pgbin/initdb" -A trust -U postgres --no-sync -D "$pgdir/data" >/dev/null
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
  -o "-p $PORT_PG -k $pgdir -c listen_addresses=127.0.0.1" start >/dev/null
trap '"${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true; bench_cleanup' EXIT
psql -h 127.0.0.1 -p "$PORT_PG" -U postgres -qc "CREATE DATABASE berth"
store="postgres://postgres@127.0.0.1:$PORT_PG/berth"

build_berth
start_mock
start_berth_variant embedded "$BIN/berth" 0
emb_port=$VARIANT_PORT emb_token=$BERTH_TOKEN emb_endpoint=$BERTH_ENDPOINT
start_berth_variant postgres "$BIN/berth" 1 --store "$store" --replica-name a
pg_port=$VARIANT_PORT pg_token=$BERTH_TOKEN pg_endpoint=$BERTH_ENDPOINT

# Replica B, on the other core with wrk: it only writes.
b_port=$((PORT_BERTH + 20))
"${PIN_CLIENT[@]}" "$BIN/berth" --bind "127.0.0.1:$b_port" --bind-https off --data "$BENCH_DIR/data-b" \
  --store "$store" --replica-name b --log-level warn >"$BENCH_DIR/berth-b.log" 2>&1 &
echo $! >"$BENCH_DIR/berth-b.pid"
_started+=("$BENCH_DIR/berth-b.pid")
wait_for curl -fsS "http://127.0.0.1:$b_port/api/status" || die "replica b did not start"
writer() {
  local i=0
  while :; do
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$b_port/api/tags" -H "Authorization: Bearer $pg_token" \
      -H 'Content-Type: application/json' -d "{\"Name\":\"t$i\"}" || true
    i=$((i + 1))
    sleep 0.05
  done
}
writer &
writer_pid=$!

path=/v1.41/_ping
targets=(
  "floor|http://127.0.0.1:$PORT_FLOOR$path|none"
  "embedded|http://127.0.0.1:$emb_port/api/endpoints/$emb_endpoint/docker$path|$emb_token"
  "postgres|http://127.0.0.1:$pg_port/api/endpoints/$pg_endpoint/docker$path|$pg_token"
)
note "$(machine_line)"
note "servers on cpu $SERVER_CPUS, wrk on cpu $CLIENT_CPUS; $rounds rounds x ${#targets[@]} targets x $dur, $conns connections"
results=$(mktemp)
wrk_rounds "$results" "${targets[@]}"
kill "$writer_pid" 2>/dev/null || true

summarize "$results" floor postgres/embedded
curl -fsS -H "Authorization: Bearer $pg_token" "http://127.0.0.1:$pg_port/metrics" | python3 -c '
import sys
b, s, c = [], 0.0, 0
for line in sys.stdin:
    if line.startswith("berth_store_feed_lag_seconds_bucket"):
        le = line.split("le=\"")[1].split("\"")[0]
        b.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    elif line.startswith("berth_store_feed_lag_seconds_sum"):
        s = float(line.split()[-1])
    elif line.startswith("berth_store_feed_lag_seconds_count"):
        c = int(float(line.split()[-1]))
if not c:
    sys.exit("no change reached replica a through the feed")
def q(p):
    for le, n in b:
        if n >= p * c:
            return le
print(f"change feed under load: {c} batches applied, mean lag {1000 * s / c:.1f} ms, p50 <= {1000 * q(0.5):g} ms, p99 <= {1000 * q(0.99):g} ms")
'
