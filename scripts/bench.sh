#!/usr/bin/env bash
# SNP and TDX verification cost on this machine, two ways over the same measured closures
# (twi_core::bench_support) and the same inputs (fresh simulated Milan and TDX root sets, and the real
# vectors oak-milan-v3 and tdx/dq-b0c06f-v4 at their as_of):
#   1. criterion: cargo bench -p twi-core --features sim --bench snp_verify --bench tdx_verify
#   2. twi bench: an in-binary median-of-N loop (interleaved), release build, JSON
# Writes target/bench/{criterion.txt,criterion.json,twi-bench.json,summary.md} and prints the summary,
# with the ratios SNP warm/raw-ECDSA (target <= 1.3), SNP cold/raw-chain (target <= 1.2), TDX
# warm/raw-P-256-x2 (target <= 1.5) and dcap-qvl/TDX-warm (target >= 3). BENCHMARKS.md quotes it.
# Then the workload attestor against SPIRE's built-in `unix` one (scripts/bench-workload.sh, target cached
# ratio <= 1.2), appended to summary.md; TWI_BENCH_WORKLOAD=0 skips it, TWI_BENCH_WORKLOAD_ARGS passes flags.
# Then the credential composer (scripts/bench-svid.sh: SPIRE issuance with and without it, target B/A <= 1.1 at
# p50 and p99; log append rate, target >= 10,000 records/s), appended to summary.md; TWI_BENCH_SVID=0 skips it,
# TWI_BENCH_SVID_ARGS passes flags.
# Usage: scripts/bench.sh [twi bench options, e.g. --iterations 500]
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
out="$target_dir/bench"
mkdir -p "$out"

echo "== criterion (cargo bench -p twi-core --features sim --bench snp_verify --bench tdx_verify)" >&2
cargo bench -p twi-core --features sim --bench snp_verify --bench tdx_verify -- --noplot 2>&1 | tee "$out/criterion.txt" >&2

echo "== twi bench (release)" >&2
cargo run --release --quiet --bin twi -- bench --json "$@" > "$out/twi-bench.json"

python3 - "$target_dir" "$out" <<'EOF'
import json, os, sys, subprocess, datetime
target_dir, out = sys.argv[1], sys.argv[2]

# Criterion: every benchmark's new/benchmark.json names it; new/estimates.json has the median (ns).
crit = {}
root = os.path.join(target_dir, "criterion")
for dirpath, _, files in os.walk(root):
    if os.path.basename(dirpath) == "new" and "benchmark.json" in files and "estimates.json" in files:
        b = json.load(open(os.path.join(dirpath, "benchmark.json")))
        e = json.load(open(os.path.join(dirpath, "estimates.json")))
        group = b.get("group_id", "")
        if not group.startswith(("snp_verify/", "tdx_verify/")):
            continue
        crit.setdefault(group.split("/", 1)[1], {})[b.get("function_id")] = e["median"]["point_estimate"]
json.dump(crit, open(os.path.join(out, "criterion.json"), "w"), indent=2)

tb = json.load(open(os.path.join(out, "twi-bench.json")))
lines = []
m = tb["machine"]
lines.append(f"Machine: {m['cpu_model']}, {m['nproc']} CPUs (nproc); date {tb['date']}; load average at start of twi bench: {m['loadavg']}")
lines.append("")
lines.append("SEV-SNP")
lines.append("")
lines.append("| fixture | source | raw ECDSA | warm verify+appraise | cold verify+appraise | raw chain | warm/raw-ECDSA (<= 1.3) | cold/raw-chain (<= 1.2) |")
lines.append("|---|---|---|---|---|---|---|---|")
def us(ns): return f"{ns/1000:.1f} µs"
def mark(r, t): return f"{r:.3f} {'met' if r <= t else 'MISSED'}"
missed = []
for f in tb["fixtures"]:
    n = f["name"]
    lines.append(f"| {n} | twi bench (median of {tb['iterations']}) | {us(f['raw_ecdsa']['median_ns'])} | {us(f['warm']['median_ns'])} | "
                 f"{us(f['cold']['median_ns'])} | {us(f['raw_chain']['median_ns'])} | {mark(f['warm_over_raw_ecdsa'], 1.3)} | {mark(f['cold_over_raw_chain'], 1.2)} |")
    if f['warm_over_raw_ecdsa'] > 1.3: missed.append(f"{n} warm (twi bench)")
    if f['cold_over_raw_chain'] > 1.2: missed.append(f"{n} cold (twi bench)")
    c = crit.get(n)
    if c and all(k in c for k in ("raw_ecdsa", "warm", "cold", "raw_chain")):
        w, k = c["warm"] / c["raw_ecdsa"], c["cold"] / c["raw_chain"]
        lines.append(f"| {n} | criterion (median) | {us(c['raw_ecdsa'])} | {us(c['warm'])} | {us(c['cold'])} | {us(c['raw_chain'])} | {mark(w, 1.3)} | {mark(k, 1.2)} |")
        if w > 1.3: missed.append(f"{n} warm (criterion)")
        if k > 1.2: missed.append(f"{n} cold (criterion)")
lines.append("")
lines.append("Intel TDX")
lines.append("")
lines.append("| fixture | source | raw P-256 x2 | raw quote sig | warm verify+appraise | cold verify+appraise | dcap-qvl full | warm/raw-P-256-x2 (<= 1.5) | dcap-qvl/warm (>= 3) |")
lines.append("|---|---|---|---|---|---|---|---|---|")
def mark_ge(r, t): return "not measured" if r is None else f"{r:.2f} {'met' if r >= t else 'MISSED'}"
for f in tb.get("tdx_fixtures", []):
    n = f["name"]
    d = f.get("dcap_qvl")
    lines.append(f"| {n} | twi bench (median of {tb['iterations']}) | {us(f['raw_ecdsa']['median_ns'])} | {us(f['raw_quote_ecdsa']['median_ns'])} | "
                 f"{us(f['warm']['median_ns'])} | {us(f['cold']['median_ns'])} | {us(d['median_ns']) if d else 'n/a'} | "
                 f"{mark(f['warm_over_raw_ecdsa'], 1.5)} | {mark_ge(f.get('dcap_qvl_over_warm'), 3.0)} |")
    if f['warm_over_raw_ecdsa'] > 1.5: missed.append(f"{n} warm (twi bench)")
    if f.get('dcap_qvl_over_warm') is None or f['dcap_qvl_over_warm'] < 3.0: missed.append(f"{n} dcap-qvl/warm (twi bench)")
    c = crit.get(n)
    if c and all(k in c for k in ("raw_ecdsa", "raw_quote_ecdsa", "warm", "cold")):
        w = c["warm"] / c["raw_ecdsa"]
        dq = c["dcap_qvl"] / c["warm"] if "dcap_qvl" in c else None
        lines.append(f"| {n} | criterion (median) | {us(c['raw_ecdsa'])} | {us(c['raw_quote_ecdsa'])} | {us(c['warm'])} | {us(c['cold'])} | "
                     f"{us(c['dcap_qvl']) if 'dcap_qvl' in c else 'n/a'} | {mark(w, 1.5)} | {mark_ge(dq, 3.0)} |")
        if w > 1.5: missed.append(f"{n} warm (criterion)")
        if dq is None or dq < 3.0: missed.append(f"{n} dcap-qvl/warm (criterion)")
lines.append("")
lines.append("Targets missed: " + (", ".join(missed) if missed else "none"))
text = "\n".join(lines) + "\n"
open(os.path.join(out, "summary.md"), "w").write(text)
print(text)
EOF

if [ "${TWI_BENCH_WORKLOAD:-1}" != 0 ]; then
  echo "== workload attestor vs SPIRE's built-in unix (scripts/bench-workload.sh)" >&2
  # shellcheck disable=SC2086 # flags are meant to split
  scripts/bench-workload.sh ${TWI_BENCH_WORKLOAD_ARGS:-} >&2
  { echo "Workload attestor (twi vs SPIRE built-in unix)"; echo; cat "$out/workload-summary.md"; } >> "$out/summary.md"
  cat "$out/workload-summary.md"
fi

if [ "${TWI_BENCH_SVID:-1}" != 0 ]; then
  echo "== credential composer: SPIRE issuance with and without it, log append rate (scripts/bench-svid.sh)" >&2
  # shellcheck disable=SC2086 # flags are meant to split
  scripts/bench-svid.sh ${TWI_BENCH_SVID_ARGS:-} >&2
  { echo; echo "Credential composer (SPIRE issuance with and without it, log append rate)"; echo; cat "$out/svid-summary.md"; } >> "$out/summary.md"
  cat "$out/svid-summary.md"
fi
