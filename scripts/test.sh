#!/usr/bin/env bash
# The project's one test command (see README): unit tests, the real-hardware vectors, in-process plugin
# tests and the end-to-end tests that run the real SPIRE server and agent v1.15.3 with our plugins.
# SPIRE is found or built by scripts/ensure-spire.sh; the end-to-end tests fail, never skip, without it.
set -euo pipefail
cd "$(dirname "$0")/.."
SPIRE_BIN_DIR=$(scripts/ensure-spire.sh)
export SPIRE_BIN_DIR
echo "using SPIRE from $SPIRE_BIN_DIR ($("$SPIRE_BIN_DIR/spire-server" --version 2>&1))"
# Plugin binaries first: the end-to-end tests load them into SPIRE by path and checksum.
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-fail-fast "$@"
