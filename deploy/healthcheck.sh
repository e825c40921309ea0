#!/bin/bash
# The image's HEALTHCHECK: GET /api/status on Berth's HTTP listener over
# loopback, healthy on a 200. Plain bash (/dev/tcp), so the image needs no
# curl. The port is BERTH_HEALTHCHECK_PORT, else the one in BERTH_BIND,
# else 9000.
set -u
port="${BERTH_HEALTHCHECK_PORT:-}"
if [[ -z $port && -n ${BERTH_BIND:-} ]]; then
    port="${BERTH_BIND##*:}"
fi
port="${port:-9000}"
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /api/status HTTP/1.1\r\nHost: localhost\r\nUser-Agent: berth-healthcheck\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 4 status <&3 || exit 1
exec 3<&-
case "$status" in
    "HTTP/1.1 200"* | "HTTP/1.0 200"*) exit 0 ;;
    *) echo "unhealthy: ${status%$'\r'}" >&2; exit 1 ;;
esac
