#!/bin/sh
# Starts as root only to read /run/berth/store-password (the host keeps it
# 0600 root, as the compose file says to make it) and to own $PGDATA; the
# cluster itself runs as postgres (setpriv, util-linux: in every Debian).
# First start: a cluster whose only network login is "berth" with that
# password. The cluster counts as made once the role and database exist
# (a marker file): a first start cut short is redone from an empty folder
# rather than leaving a cluster without its role. Later starts: as is.
set -eu
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 0700 "$PGDATA"
if [ ! -e "$PGDATA/.berth-initialised" ]; then
    pw="$(cat /run/berth/store-password)" || { echo "cannot read /run/berth/store-password" >&2; exit 1; }
    [ -n "$pw" ] || { echo "empty /run/berth/store-password" >&2; exit 1; }
    find "$PGDATA" -mindepth 1 -delete
    as_postgres initdb -D "$PGDATA" -U postgres -A peer -E UTF8 >/dev/null
    as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    # The password reaches psql through its environment (\getenv), never
    # an argument list, which any process in the container could read.
    export BERTH_PW="$pw"
    as_postgres psql -q -v ON_ERROR_STOP=1 -U postgres -d postgres <<'SQL'
\getenv pw BERTH_PW
CREATE ROLE berth LOGIN PASSWORD :'pw';
CREATE DATABASE berth OWNER berth;
SQL
    unset BERTH_PW
    as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "host berth berth all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    touch "$PGDATA/.berth-initialised"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups -- postgres -D "$PGDATA" -c listen_addresses='*'
