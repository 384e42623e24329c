#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that reads untrusted input (cargo-fuzz, libFuzzer, nightly).
#   scripts/fuzz.sh smoke            every target for FUZZ_SMOKE_SECONDS (default 15) each, libFuzzer seed
#                                    FUZZ_SEED (default 1) (CI); fails on
#                                    the first crash, leak, timeout or out-of-memory
#   scripts/fuzz.sh run TARGET SECS  one target for longer (local runs: minutes)
#   scripts/fuzz.sh list             the targets
#
# Corpora: fuzz/corpus/<target> (kept between runs, not in git) first, then read-only seeds:
# fuzz/seeds/<target> (small hand-written inputs, in git), the real evidence of
# ../shared/testdata (TWI_TESTDATA overrides; copied to a temp dir at run time, never into the repo), and
# what a harness writes at start into TWI_FUZZ_SEED_DIR: for the TDX targets the simulated quote and
# collateral; for the provenance targets (provenance_json, dsse_envelope, intoto_statement,
# slsa_provenance, sbom) Statements, predicates and envelopes signed by the harness key, made with the
# provenance tests' own fixtures (twi_workload_attestor::provenance::testing).
# Targets are the [[bin]] entries of fuzz/Cargo.toml (`cargo fuzz list`): smoke runs every one.
# Crashes are written to fuzz/artifacts/<target>/; reproduce with
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-…
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
testdata=${TWI_TESTDATA:-$root/../shared/testdata}
if [ ! -f "$testdata/manifest.toml" ]; then
  echo "no test data at $testdata (set TWI_TESTDATA): the TDX and SNP seeds come from it" >&2
  exit 1
fi
export TWI_TESTDATA=$testdata
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Extra seed directories of one target, one per line.
seed_dirs() {
  local t=$1 d=$tmp/$1
  mkdir -p "$d/testdata" "$d/sim"
  [ -d "fuzz/seeds/$t" ] && echo "fuzz/seeds/$t"
  local globs=()
  case $t in
    tdx_quote) globs=(tdx/*/quote.bin negative/tdx-*/quote.bin) ;;
    tdx_collateral) globs=(tdx/*/collateral/* negative/tdx-*/*.json negative/tdx-*/*.der) ;;
    snp_evidence) globs=(snp/*/* negative/snp-*/*) ;;
  esac
  local g f
  for g in "${globs[@]}"; do
    for f in "$testdata"/$g; do
      [ -f "$f" ] && cp "$f" "$d/testdata/$(echo "${f#"$testdata"/}" | tr / _)"
    done
  done
  echo "$d/testdata"
  echo "$d/sim"
}

fuzz() {
  local t=$1 secs=$2 seed=${3:-0} dirs
  mkdir -p "fuzz/corpus/$t"
  mapfile -t dirs < <(seed_dirs "$t")
  echo "fuzzing $t for ${secs}s"
  TWI_FUZZ_SEED_DIR="$tmp/$t/sim" cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "${dirs[@]}" -- \
    -max_total_time="$secs" -seed="$seed" -rss_limit_mb=2048 -timeout=60 -print_final_stats=1
}

case "${1:-smoke}" in
  smoke)
    cargo +nightly fuzz build
    for t in $(cargo +nightly fuzz list); do
      # A fixed seed (FUZZ_SEED) keeps CI's verdict tied to the code, not to luck: exploring is
      # what `run` is for (random seed).
      fuzz "$t" "${FUZZ_SMOKE_SECONDS:-15}" "${FUZZ_SEED:-1}"
    done ;;
  run) fuzz "${2:?target}" "${3:-300}" ;;
  list) cargo +nightly fuzz list ;;
  *) echo "usage: scripts/fuzz.sh smoke | run TARGET SECONDS | list" >&2; exit 2 ;;
esac
