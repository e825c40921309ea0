#!/bin/sh
# First start: a cluster whose only network login is "berth" with the
# password from /run/berth/store-password. Later starts: the cluster as is.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb -D "$PGDATA" -U postgres -A peer -E UTF8 >/dev/null
    pw="$(cat /run/berth/store-password)"
    [ -n "$pw" ] || { echo "empty /run/berth/store-password" >&2; exit 1; }
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    psql -v ON_ERROR_STOP=1 -U postgres -d postgres -v pw="$pw" <<'SQL'
CREATE ROLE berth LOGIN PASSWORD :'pw';
CREATE DATABASE berth OWNER berth;
SQL
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "host berth berth all scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
