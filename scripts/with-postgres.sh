#!/usr/bin/env bash
# Usage: scripts/with-postgres.sh COMMAND [ARGS...]
# Runs COMMAND against a throwaway PostgreSQL 15 server, with
#   MESHMART_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/postgres
#   MESHMART_TEST_POSTGRES_CA=/tmp/.../ca.pem        the CA that signed the server's certificate
#   MESHMART_TEST_POSTGRES_WRONG_CA=/tmp/.../wrong-ca.pem   a CA that signed nothing here
# (plus PGHOST/PGPORT/PGUSER/PGDATABASE for psql) exported, then stops the server and
# deletes its data, whatever happens. Exits with COMMAND's exit code.
# The server accepts TLS (ssl=on) with a certificate for 127.0.0.1 and localhost made at
# start, so clients can test sslmode=verify-full; plain connections work as before.
# Why throwaway: tests get a clean superuser DB, never touch a machine-wide
# cluster, and parallel runs don't collide (each picks its own free port).
set -euo pipefail

[[ $# -gt 0 ]] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

PG_BIN=/usr/lib/postgresql/15/bin
if [[ ! -x "$PG_BIN/pg_ctl" ]]; then
  # Fresh machines (CI) don't have it. The package also creates and starts a
  # "main" cluster on 5432; we don't use it, so stop it to save memory.
  echo "with-postgres: installing postgresql-15 via apt-get..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  pg_ctlcluster 15 main stop 2>/dev/null || true
fi

# PostgreSQL refuses to run as root, so as root we run it as "postgres";
# any other user just runs it as themselves.
if [[ $EUID -eq 0 ]]; then
  id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/false postgres
  as_pg() { (cd "$tmp" && runuser -u postgres -- "$@"); }  # cd: postgres can't read root's cwd
else
  as_pg() { (cd "$tmp" && "$@"); }
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/meshmart-pg.XXXXXX")"
data="$tmp/data"
# shellcheck disable=SC2329  # called via trap
cleanup() {
  # immediate = no checkpoint: the data is thrown away anyway.
  if [[ -f "$data/postmaster.pid" ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT   # make EXIT trap run on Ctrl-C / kill too
trap 'exit 143' TERM
[[ $EUID -eq 0 ]] && chown postgres: "$tmp"

# A CA and a server certificate for this run only (EC P-256: quick to make), and a second CA
# that signed nothing, for the test that a wrong CA is refused. The key must be the server
# user's and private, or PostgreSQL will not start.
command -v openssl >/dev/null || { echo "with-postgres: needs openssl (apt-get install openssl)" >&2; exit 1; }
tls="$tmp/tls"
mkdir -p "$tls"
make_ca() { # make_ca NAME: $tls/NAME.pem and $tls/NAME.key
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=meshmart throwaway $1" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$tls/$1.key" -out "$tls/$1.pem" 2>>"$tls/openssl.log"
}
{
  make_ca ca && make_ca wrong-ca &&
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout "$tls/server.key" -out "$tls/server.csr" 2>>"$tls/openssl.log" &&
  printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$tls/server.ext" &&
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/server.ext" -out "$tls/server.crt" 2>>"$tls/openssl.log"
} || { echo "with-postgres: could not make the test certificates" >&2; cat "$tls/openssl.log" >&2; exit 1; }
chmod 600 "$tls/server.key"
[[ $EUID -eq 0 ]] && chown -R postgres: "$tls"
chmod 755 "$tls"
chmod 644 "$tls/ca.pem" "$tls/wrong-ca.pem"

# trust auth is fine: the server listens only on 127.0.0.1 and a private
# socket dir; --no-sync/fsync=off because durability is pointless here.
as_pg "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$tmp/initdb.log" 2>&1 \
  || { cat "$tmp/initdb.log" >&2; exit 1; }

# First free port from 55432 up. A port can be taken between our probe and the
# server's bind (parallel runs), so a bind failure just moves on to the next.
port=55432
while :; do
  rm -f "$tmp/server.log"
  if (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then   # something listens
    port=$((port + 1))
  elif out="$(as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$tmp/server.log" -w -t 30 start -o \
      "-c listen_addresses=127.0.0.1 -p $port -k $tmp -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c ssl=on -c ssl_cert_file=$tls/server.crt -c ssl_key_file=$tls/server.key" 2>&1)"; then
    break  # -w -t 30: waited (at most 30s) until the server accepts connections
  elif grep -qiE 'could not bind|already in use' "$tmp/server.log" 2>/dev/null; then
    port=$((port + 1))
  else
    echo "with-postgres: server failed to start (or not ready within 30s): $out" >&2
    cat "$tmp/server.log" >&2 2>/dev/null || true
    exit 1
  fi
  ((port < 55532)) || { echo "with-postgres: no free port in 55432-55531" >&2; exit 1; }
done
# pg_ctl -w only watched the pid file; check the TCP listener clients will use.
"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 10 \
  || { echo "with-postgres: server on port $port not accepting connections" >&2; exit 1; }

export MESHMART_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
export MESHMART_TEST_POSTGRES_CA="$tls/ca.pem" MESHMART_TEST_POSTGRES_WRONG_CA="$tls/wrong-ca.pem"
export PGHOST=127.0.0.1 PGPORT="$port" PGUSER=postgres PGDATABASE=postgres

rc=0
"$@" || rc=$?
exit "$rc"
