#!/usr/bin/env bash
# The one test command (README "Run the tests"; CI runs exactly this).
# Checks for and, where it can, installs what the tests need, then runs
# formatting, lint and the whole test suite. Fails loudly on anything missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
  echo "error: cargo is not installed (install Rust from your distribution or rustup)" >&2
  exit 1
fi
# A C compiler builds the bundled SQLite.
if ! need cc; then
  if need apt-get; then
    apt-get update -qq && apt-get install -y -qq build-essential
  else
    echo "error: a C compiler (cc) is required to build the bundled SQLite" >&2
    exit 1
  fi
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest from crates.io…"
  cargo install --locked cargo-nextest
fi

# A real browser for the dashboard tests: Debian's chromium and
# chromium-driver (no test tool downloads its own browser). The tests fail,
# never skip, without them.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if need apt-get; then
    echo "installing chromium and chromium-driver (dashboard tests)…"
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver
  else
    echo "error: the dashboard tests need /usr/bin/chromium and /usr/bin/chromedriver (Debian: apt-get install chromium chromium-driver)" >&2
    exit 1
  fi
fi

# An S3-compatible server for the archive tests: moto (PyPI) in server
# mode, in a virtualenv under target/, on a free loopback port. The tests
# read LETHE_TEST_S3_ENDPOINT and fail (never skip) without it.
if ! need python3; then
  if need apt-get; then
    apt-get update -qq && apt-get install -y -qq python3 python3-venv
  else
    echo "error: python3 is required to run the S3 test server (moto)" >&2
    exit 1
  fi
fi
venv=target/s3-venv
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "installing moto (S3 test server) into $venv…"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    if need apt-get; then
      apt-get update -qq && apt-get install -y -qq python3-venv
      python3 -m venv "$venv"
    else
      echo "error: python3 -m venv does not work (install python3-venv)" >&2
      exit 1
    fi
  fi
  "$venv/bin/pip" install -q 'moto[server]==5.2.5'
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >target/moto.log 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null; then
    break
  fi
  if ! kill -0 $moto_pid 2>/dev/null; then
    echo "error: the S3 test server (moto) did not start; see target/moto.log" >&2
    cat target/moto.log >&2
    exit 1
  fi
  sleep 0.2
done
export LETHE_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
echo "S3 test server (moto) at $LETHE_TEST_S3_ENDPOINT"

# PostgreSQL for the PostgreSQL backend's suites (plain and TLS-only).
stop_all() {
  kill $moto_pid 2>/dev/null || true
  if declare -F pg_stop_all >/dev/null; then pg_stop_all; fi
}
trap stop_all EXIT
# shellcheck source=scripts/test-postgres.sh
. scripts/test-postgres.sh
echo "PostgreSQL for the tests at $LETHE_TEST_PG_URL, TLS-only at $LETHE_TEST_PG_TLS_URL"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The bench harness is built in release mode so a broken harness fails here.
cargo build --release -p lethe-bench -p lethe-cli
cargo nextest run --workspace --no-fail-fast
