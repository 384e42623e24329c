#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that reads untrusted input (cargo-fuzz, libFuzzer, nightly).
#   scripts/fuzz.sh smoke            every target for FUZZ_SMOKE_SECONDS (default 20) each (CI)
#   scripts/fuzz.sh run TARGET SECS  one target for longer (local runs: minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=$(cargo +nightly fuzz list)
case "${1:-smoke}" in
  smoke)
    for t in $targets; do
      echo "fuzzing $t for ${FUZZ_SMOKE_SECONDS:-20}s"
      cargo +nightly fuzz run "$t" -- -max_total_time="${FUZZ_SMOKE_SECONDS:-20}" -rss_limit_mb=2048
    done ;;
  run) cargo +nightly fuzz run "${2:?target}" -- -max_total_time="${3:-300}" -rss_limit_mb=2048 ;;
  *) echo "usage: scripts/fuzz.sh smoke | run TARGET SECONDS" >&2; exit 2 ;;
esac
