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

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The bench harness is built in release mode so a broken harness fails here.
cargo build --release -p lethe-bench -p lethe-cli
cargo nextest run --workspace --no-fail-fast
