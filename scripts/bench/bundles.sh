#!/usr/bin/env bash
# Client bundles under load (issue 18), side by side in one run, rounds
# interleaved, one client (loadgen requests: HTTPS keep-alive connections,
# small GETs through the proxy) for every row:
#
#   jwt-plain    Berth with --client-certs false, JWT header
#   jwt-certs    Berth asking for client certificates, JWT header, no
#                certificate presented (what every header client sees)
#   bundle       the same Berth, the bundle's certificate, no header
#
# Headline: jwt-certs / jwt-plain (asking for certificates must not slow
# header clients) and bundle / jwt-certs (a bundle must cost no more than
# a JWT). Servers on core $SERVER_CPUS, the client on core $CLIENT_CPUS.
#
# Usage: scripts/bench/bundles.sh
# Knobs: ROUNDS (5), SECONDS_PER_ROUND (5), CONNS (64), SKIP_BUILD=1.
source "$(dirname "$0")/lib.sh"

rounds=${ROUNDS:-5}
secs=${SECONDS_PER_ROUND:-5}
conns=${CONNS:-64}

build_berth
build_loadgen
start_mock
VARIANT_HTTPS_PORT=$((PORT_BERTH + 30)) start_berth_variant plain "$BIN/berth" 0 --client-certs false
plain_https=$((PORT_BERTH + 30)) plain_token=$BERTH_TOKEN plain_endpoint=$BERTH_ENDPOINT
plain_ca="$BENCH_DIR/data-plain/ca/ca.pem"
VARIANT_HTTPS_PORT=$((PORT_BERTH + 31)) start_berth_variant certs "$BIN/berth" 1
certs_https=$((PORT_BERTH + 31)) certs_token=$BERTH_TOKEN certs_endpoint=$BERTH_ENDPOINT
certs_base="http://127.0.0.1:$VARIANT_PORT"
certs_ca="$BENCH_DIR/data-certs/ca/ca.pem"

# The admin's bundle on the certificate-asking Berth.
bundle_dir="$BENCH_DIR/bundle"
rm -rf "$bundle_dir" && mkdir -p "$bundle_dir"
curl -fsS -X POST "$certs_base/api/users/1/bundles" -H "Authorization: Bearer $certs_token" \
  -H 'Content-Type: application/json' -d "{\"password\":\"$ADMIN_PASSWORD\",\"description\":\"bench\"}" \
  -o "$bundle_dir/bundle.zip" || die "bundle creation failed"
python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$bundle_dir/bundle.zip" "$bundle_dir"

path() { echo "/api/endpoints/$1/docker/v1.41/_ping"; }
targets=(
  "jwt-plain|$plain_https|$(path "$plain_endpoint")|$plain_token|$plain_ca|"
  "jwt-certs|$certs_https|$(path "$certs_endpoint")|$certs_token|$certs_ca|"
  "bundle|$certs_https|$(path "$certs_endpoint")||$certs_ca|$bundle_dir"
)
for t in "${targets[@]}"; do
  IFS='|' read -r name port p tok ca b <<<"$t"
  args=(requests --tcp "127.0.0.1:$port" --path "$p" --tls-ca "$ca" --connections 1 --seconds 0.2)
  [ -n "$tok" ] && args+=(--token "$tok")
  [ -n "$b" ] && args+=(--tls-cert "$b/cert.pem" --tls-key "$b/key.pem")
  "$BIN/loadgen" "${args[@]}" >/dev/null || die "$name does not answer"
done

note "$(machine_line)"
note "servers on cpu $SERVER_CPUS, loadgen on cpu $CLIENT_CPUS; $rounds rounds x ${#targets[@]} targets x ${secs}s, $conns connections"
results=$(mktemp)
for ((r = 1; r <= rounds; r++)); do
  n=${#targets[@]}
  for ((j = 0; j < n; j++)); do
    IFS='|' read -r name port p tok ca b <<<"${targets[$(((j + r - 1) % n))]}"
    args=(requests --tcp "127.0.0.1:$port" --path "$p" --tls-ca "$ca" --connections "$conns" --seconds "$secs")
    [ -n "$tok" ] && args+=(--token "$tok")
    [ -n "$b" ] && args+=(--tls-cert "$b/cert.pem" --tls-key "$b/key.pem")
    out=$("${PIN_CLIENT[@]}" "$BIN/loadgen" "${args[@]}") || die "$name failed under load"
    echo "$name $r $(sed -n 's/.*rps=\([0-9.]*\).*/\1/p' <<<"$out")" | tee -a "$results" >&2
  done
done

summarize "$results" jwt-plain jwt-certs/jwt-plain bundle/jwt-certs
