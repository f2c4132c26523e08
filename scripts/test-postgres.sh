# Sourced by scripts/test.sh: makes PostgreSQL available to the tests.
#
# LETHE_TEST_PG_URL: the server named by it if set, else the local service
# (127.0.0.1:5432, user postgres, database test) if it answers, else a
# private cluster on a free loopback port (installing postgresql-15 when
# missing).
#
# LETHE_TEST_PG_TLS_URL and LETHE_TEST_PG_TLS_CA: a server that accepts
# only TLS connections, with a certificate for 127.0.0.1 signed by the CA
# in the named PEM file. Named by the environment if set, else a private
# cluster with a CA and certificate made here with openssl.
#
# Private clusters are stopped by pg_stop_all (test.sh's exit trap). The
# tests fail, never skip, when none can be had.

pg_answers() { psql "$1" -qAtc 'select 1' >/dev/null 2>&1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_dirs=()

if ! need psql; then
  if need apt-get; then
    apt-get update -qq && apt-get install -y -qq postgresql-15
  else
    echo "error: the PostgreSQL suites need psql and a server (Debian: apt-get install postgresql-15)" >&2
    exit 1
  fi
fi

pg_server_bin() {
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$pgbin" ]; then
    if need apt-get; then apt-get update -qq && apt-get install -y -qq postgresql-15; fi
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  fi
  [ -n "$pgbin" ] || { echo "error: no PostgreSQL server binaries (apt-get install postgresql-15)" >&2; exit 1; }
}

# pg_private_cluster DIR PORT [postgres -c options...]: initdb and start.
# With PG_HBA set, its text replaces pg_hba.conf before the first start.
pg_private_cluster() {
  local dir=$1 port=$2
  shift 2
  [ "$(id -u)" = 0 ] && chown -R postgres "$dir"
  as_pg "$pgbin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
  pg_dirs+=("$dir")
  if [ -n "${PG_HBA:-}" ]; then printf '%s\n' "$PG_HBA" | as_pg tee "$dir/data/pg_hba.conf" >/dev/null; fi
  as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir $*" start >/dev/null
}

pg_stop_all() {
  for d in "${pg_dirs[@]}"; do
    as_pg "$pgbin/pg_ctl" -D "$d/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$d"
  done
}

if [ -n "${LETHE_TEST_PG_URL:-}" ]; then
  pg_answers "$LETHE_TEST_PG_URL" || { echo "error: LETHE_TEST_PG_URL does not answer" >&2; exit 1; }
elif pg_answers "postgres://postgres@127.0.0.1:5432/test"; then
  export LETHE_TEST_PG_URL="postgres://postgres@127.0.0.1:5432/test"
else
  pg_server_bin
  pgdir=$(mktemp -d /tmp/lethe-pg.XXXXXX)
  pgport=$(free_port)
  pg_private_cluster "$pgdir" "$pgport" -c max_connections=300
  psql "postgres://postgres@127.0.0.1:$pgport/postgres" -qc 'create database test'
  export LETHE_TEST_PG_URL="postgres://postgres@127.0.0.1:$pgport/test"
fi

if [ -n "${LETHE_TEST_PG_TLS_URL:-}" ]; then
  [ -r "${LETHE_TEST_PG_TLS_CA:-}" ] || { echo "error: LETHE_TEST_PG_TLS_URL is set but LETHE_TEST_PG_TLS_CA names no readable file" >&2; exit 1; }
else
  need openssl || { echo "error: openssl is needed to make the TLS test server's certificate (apt-get install openssl)" >&2; exit 1; }
  pg_server_bin
  pgdir=$(mktemp -d /tmp/lethe-pgtls.XXXXXX)
  pgport=$(free_port)
  (
    cd "$pgdir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3 \
      -subj "/CN=Lethe test CA" -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3 \
      -extfile server.ext -out server.crt 2>/dev/null
    chmod 600 server.key
  )
  # Only TLS from the network: a plaintext connection is refused, so a test
  # that connects at all has used TLS.
  PG_HBA=$'local all all trust\nhostssl all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 reject' \
    pg_private_cluster "$pgdir" "$pgport" -c max_connections=50 -c ssl=on \
    -c ssl_cert_file="$pgdir/server.crt" -c ssl_key_file="$pgdir/server.key"
  psql "postgres://postgres@127.0.0.1:$pgport/postgres?sslmode=require" -qc 'create database test'
  export LETHE_TEST_PG_TLS_URL="postgres://postgres@127.0.0.1:$pgport/test?sslmode=require"
  export LETHE_TEST_PG_TLS_CA="$pgdir/ca.crt"
fi
