#!/usr/bin/env bash
# Restricted access under load (issue 14): what a standard user's request
# costs next to an admin's, side by side in one run, rounds interleaved.
#
#   floor        wrk straight to the mock backend (no proxy)
#   admin-ping   admin, GET /_ping            (the admin path: one branch, no body work)
#   admin-list   admin, GET /containers/json  (passed through; no controls exist)
#   user-ping    standard user, GET /_ping    (rule lookup, then forwarded as is)
#   user-list    standard user, GET /containers/json (the answer parsed item by
#                item, each item's control decided, the list re-encoded)
#
# Backend: Berth's mock engine (berth-mock-docker), whose container list is
# ~2 KB of JSON. Servers on core $SERVER_CPUS, wrk on core $CLIENT_CPUS.
#
# Usage: scripts/bench/restricted.sh
# Knobs: ROUNDS (5), DURATION (5s), CONNS (64), BERTH_BIN (a prebuilt berth;
#        default: build the tree), SKIP_BUILD=1.
source "$(dirname "$0")/lib.sh"

rounds=${ROUNDS:-5}
dur=${DURATION:-5s}
conns=${CONNS:-64}
user_password=berth-bench-user-password

have wrk || die "wrk is not installed (apt-get install -y wrk)"
build_berth
start_mock
start_berth_variant restricted "${BERTH_BIN:-$BIN/berth}" 0
base="http://127.0.0.1:$VARIANT_PORT"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# A standard user granted the endpoint (its security settings: Berth's secure default).
uid=$(curl -fsS -X POST "$base/api/users" -H "Authorization: Bearer $BERTH_TOKEN" -H 'Content-Type: application/json' \
  -d "{\"Username\":\"bob\",\"Password\":\"$user_password\",\"Role\":2}" | json '["Id"]') || die "user creation failed"
curl -fsS -X PUT "$base/api/endpoints/$BERTH_ENDPOINT" -H "Authorization: Bearer $BERTH_TOKEN" \
  -H 'Content-Type: application/json' -d "{\"UserAccessPolicies\":{\"$uid\":{\"RoleId\":0}}}" >/dev/null ||
  die "granting the endpoint failed"
user_token=$(curl -fsS -X POST "$base/api/auth" -H 'Content-Type: application/json' \
  -d "{\"Username\":\"bob\",\"Password\":\"$user_password\"}" | json '["jwt"]') || die "user login failed"

proxy="$base/api/endpoints/$BERTH_ENDPOINT/docker/v1.41"
targets=(
  "floor|http://127.0.0.1:$PORT_FLOOR/v1.41/containers/json|none"
  "admin-ping|$proxy/_ping|$BERTH_TOKEN"
  "admin-list|$proxy/containers/json|$BERTH_TOKEN"
  "user-ping|$proxy/_ping|$user_token"
  "user-list|$proxy/containers/json|$user_token"
)
for t in "${targets[@]}"; do
  IFS='|' read -r name url tok <<<"$t"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "$url" || true)
  [ "$code" = 200 ] || die "$name answered $code for $url"
done

note "$(machine_line)"
note "servers on cpu $SERVER_CPUS, wrk on cpu $CLIENT_CPUS; $rounds rounds x ${#targets[@]} targets x $dur, $conns connections"
results=$(mktemp)
for ((r = 1; r <= rounds; r++)); do
  n=${#targets[@]}
  for ((j = 0; j < n; j++)); do
    IFS='|' read -r name url tok <<<"${targets[$(((j + r - 1) % n))]}"
    out=$("${PIN_CLIENT[@]}" wrk -t1 -c"$conns" -d"$dur" --latency -H "Authorization: Bearer $tok" "$url")
    grep -q 'Non-2xx\|Socket errors' <<<"$out" && { echo "$out" >&2; die "$name returned errors under load"; }
    echo "$name $r $(awk '/Requests\/sec/{print $2}' <<<"$out") $(awk '$1=="99%"{print $2}' <<<"$out")" |
      tee -a "$results" >&2
  done
done

python3 - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, _, rps, _p99 = line.split()
    rows.setdefault(name, []).append(float(rps))
med = {n: statistics.median(v) for n, v in rows.items()}
print(f"{'target':<12} {'rps':>8} {'x floor':>8} {'x admin-ping':>13}")
for n, v in med.items():
    print(f"{n:<12} {v:8.0f} {v / med['floor']:8.2f} {v / med['admin-ping']:13.2f}")
print(f"user-list / admin-list: {med['user-list'] / med['admin-list']:.2f}; "
      f"user-ping / admin-ping: {med['user-ping'] / med['admin-ping']:.2f}")
EOF
