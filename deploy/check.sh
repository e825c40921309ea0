#!/usr/bin/env bash
# Static checks of deploy/ (no Docker engine needed, ~10 s):
#   - grafana/berth.json is valid JSON (python3 -m json.tool) and every
#     panel queries a series Berth exports;
#   - promtool: check config (prometheus.yml), check rules (alerts.yml),
#     test rules (alerts_test.yml);
#   - berth.service: `systemd-analyze verify` reports nothing (in a temp
#     root holding the system's units and a copy of the binary at
#     /usr/local/bin/berth), `systemd-analyze security` exposure <= 2.0;
#   - berth.toml loads: Berth starts on it (ports and data overridden),
#     answers /api/status, and on SIGTERM exits 0 well within the unit's
#     TimeoutStopSec;
#   - docker-compose.yml: `docker-compose config` accepts it;
#   - the scripts parse (bash -n).
# A missing tool prints SKIP for its check (a failure instead under
# BERTH_REQUIRE_DEPLOY_TOOLS=1, which .ci/run sets after installing them).
#
# Usage: deploy/check.sh
set -euo pipefail
SCRIPT_NAME=check
# shellcheck source=deploy/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"

have() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [[ ${BERTH_REQUIRE_DEPLOY_TOOLS:-0} == 1 ]]; then
        fail "$1 not found (required here)"
    else
        echo "  SKIP $2: $1 not found"
    fi
    return 1
}

tmp="$(mktemp -d /tmp/berth-check.XXXXXX)"
berth_pid=
cleanup() {
    if [[ -n $berth_pid ]]; then kill "$berth_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# ----------------------------------------------------------------- scripts
for f in deploy/*.sh; do
    check "bash -n $f" bash -n "$f"
done

# ----------------------------------------------------------------- grafana
check "grafana/berth.json is valid JSON (python3 -m json.tool)" \
    bash -c 'python3 -m json.tool deploy/grafana/berth.json >/dev/null'
check "grafana/berth.json: every query names a series from src/metrics.rs" python3 - <<'EOF'
import json, re, sys
d = json.load(open("deploy/grafana/berth.json"))
src = open("src/metrics.rs").read()
known = set(re.findall(r'"(berth_[a-z_]+)"', src))
# Histograms add _bucket/_sum/_count; the process collector adds process_*.
def ok(name):
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in known or base in known or name.startswith("process_") or name == "up"
bad, n = [], 0
def walk(panels):
    global n
    for p in panels:
        walk(p.get("panels", []))
        for t in p.get("targets", []):
            n += 1
            for name in re.findall(r"\b((?:berth|process)_[a-z_]+|up)\b(?=\s*[{\[(]|\s*$|\s*\))", t["expr"]):
                if not ok(name):
                    bad.append((p.get("title"), name))
walk(d["panels"])
if bad or n < 10:
    print("unknown series:", bad, "queries:", n, file=sys.stderr)
    sys.exit(1)
EOF

# ------------------------------------------------------------- prometheus
if have promtool "promtool checks"; then
    check "promtool check config deploy/prometheus.yml (with alerts.yml)" \
        bash -c 'promtool check config deploy/prometheus.yml >/dev/null'
    check "promtool check rules deploy/alerts.yml" bash -c 'promtool check rules deploy/alerts.yml >/dev/null'
    out="$(cd deploy && promtool test rules alerts_test.yml 2>&1)" && rc=0 || rc=$?
    if [[ $rc == 0 ]]; then pass "promtool test rules deploy/alerts_test.yml"; else
        fail "promtool test rules deploy/alerts_test.yml"
        echo "$out" | sed 's/^/      /' >&2
    fi
fi

# ------------------------------------------------------------------ binary
BERTH="${BERTH_BIN:-}"
if [[ -z $BERTH ]]; then
    cargo build --locked --quiet --bin berth
    BERTH="$REPO_DIR/target/debug/berth"
fi

# ------------------------------------------------------------------ systemd
if have systemd-analyze "systemd unit checks"; then
    root="$tmp/root"
    mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/local/bin"
    for d in /usr/lib/systemd/system /lib/systemd/system; do
        if [[ -d $d ]]; then
            cp -a "$d" "$root/usr/lib/systemd/"
            break
        fi
    done
    cp deploy/berth.service "$root/etc/systemd/system/berth.service"
    install -m 0755 "$BERTH" "$root/usr/local/bin/berth"
    out="$(systemd-analyze verify --root="$root" /etc/systemd/system/berth.service 2>&1)" && rc=0 || rc=$?
    if [[ $rc == 0 && -z $out ]]; then
        pass "systemd-analyze verify berth.service: nothing to report"
    else
        fail "systemd-analyze verify berth.service (exit $rc)"
        echo "$out" | sed 's/^/      /' >&2
    fi
    sec="$(systemd-analyze security --offline=true --root="$root" /etc/systemd/system/berth.service 2>&1 || true)"
    score="$(sed -n 's/.*Overall exposure level for berth.service: \([0-9.]*\).*/\1/p' <<<"$sec")"
    check "systemd-analyze security berth.service: exposure ${score:-?} (at most 2.0)" \
        python3 -c 'import sys; sys.exit(0 if float(sys.argv[1] or 99) <= 2.0 else 1)' "${score:-}"
    for key in "User=berth" "SupplementaryGroups=docker" "StateDirectory=berth" "NoNewPrivileges=yes" \
        "ProtectSystem=strict" "ProtectHome=yes" "PrivateTmp=yes" \
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" "Restart=on-failure" \
        "ExecStart=/usr/local/bin/berth --config /etc/berth/berth.toml"; do
        check "berth.service has $key" grep -q "^$key" deploy/berth.service
    done
fi

# ------------------------------------------------ berth.toml and SIGTERM
stop_limit="$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' deploy/berth.service)"
PORT="$(free_port)"
MPORT="$(free_port)"
"$BERTH" --config deploy/berth.toml --data "$tmp/data" --bind "127.0.0.1:$PORT" --bind-https off \
    --metrics-bind "127.0.0.1:$MPORT" --log-level warn >"$tmp/berth.log" 2>&1 &
berth_pid=$!
if wait_until 30 http_ok "http://127.0.0.1:$PORT/api/status"; then
    pass "Berth starts on deploy/berth.toml and answers /api/status"
    code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/metrics")"
    check "berth.toml: /metrics on the public port needs a credential ($code)" test "$code" = 401
    check "berth.toml: the metrics listener answers" http_ok "http://127.0.0.1:$MPORT/metrics"
    t0=$SECONDS
    kill -TERM "$berth_pid"
    rc=0
    wait "$berth_pid" || rc=$?
    berth_pid=
    check "SIGTERM: Berth exits 0 (exit $rc) within TimeoutStopSec=${stop_limit}s (took $((SECONDS - t0)) s)" \
        bash -c '[[ $1 == 0 && $2 -lt $3 ]]' _ "$rc" "$((SECONDS - t0))" "${stop_limit:-0}"
else
    fail "Berth did not start on deploy/berth.toml"
    sed 's/^/      /' "$tmp/berth.log" >&2
fi

# ------------------------------------------------------------------ compose
if have docker-compose "docker-compose config"; then
    out="$(docker-compose -f deploy/docker-compose.yml config -q 2>&1)" && rc=0 || rc=$?
    if [[ $rc == 0 && -z $out ]]; then
        pass "docker-compose config accepts deploy/docker-compose.yml"
    else
        fail "docker-compose config (exit $rc)"
        echo "$out" | sed 's/^/      /' >&2
    fi
    check "docker-compose.yml: restart policy, healthcheck, /data volume, socket" bash -c '
        c="$(docker-compose -f deploy/docker-compose.yml config)"
        grep -q "restart: unless-stopped" <<<"$c" && grep -q "healthcheck:" <<<"$c" &&
        grep -q "berth_data:/data" <<<"$c" && grep -q "/var/run/docker.sock:/var/run/docker.sock" <<<"$c"'
fi

# ------------------------------------------------------------------ replicas
if have docker-compose "docker-compose config"; then
    check "replicas/docker-compose.yml: docker-compose config accepts it" \
        docker-compose -f deploy/replicas/docker-compose.yml config -q
    check "replicas: PostgreSQL, two replicas on it with a password file, HAProxy in front" bash -c '
        c="$(docker-compose -f deploy/replicas/docker-compose.yml config)"
        grep -q "BERTH_STORE: postgres://berth@postgres/berth" <<<"$c" &&
        grep -q "BERTH_STORE_PASSWORD_FILE" <<<"$c" && grep -q "BERTH_REPLICA_NAME: berth-b" <<<"$c" &&
        grep -q "Dockerfile.haproxy" <<<"$c" && ! grep -q "BERTH_STORE_PASSWORD:" <<<"$c"'
fi
if have haproxy "haproxy -c"; then
    check "replicas/haproxy.cfg: haproxy -c accepts it, health checks /api/status" bash -c '
        haproxy -c -f deploy/replicas/haproxy.cfg >/dev/null 2>&1 &&
        grep -q "option httpchk GET /api/status" deploy/replicas/haproxy.cfg'
fi
check "replicas/postgres-entrypoint.sh parses (sh -n)" sh -n deploy/replicas/postgres-entrypoint.sh

if [[ -n ${score:-} ]]; then say "systemd-analyze security exposure: $score"; fi
summary
