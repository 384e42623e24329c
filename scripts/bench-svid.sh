#!/usr/bin/env bash
# The credential composer's cost (issue #5 item 6; BENCHMARKS.md quotes it), in one run of
# `twi bench-svid` (release build):
#   1. X.509-SVID issuance by three real SPIRE 1.15.3 servers with the same configuration: A alone, N with
#      a pass-through composer plugin, B with twi-server-credentialcomposer; through SPIRE's own
#      MintX509SVID on the local API socket, interleaved call by call, then 8 calls in flight.
#      Goal: B / A <= 1.10 at p50 and at p99.
#   2. The composer's steps timed in-process (EAR read, entry lookup, signing, log append, fsync).
#   3. The transparency log's durable append rate (real signed statements through its sequencer, 1 to
#      256 appenders) beside the raw write+fdatasync rate of the same disk. Goal: >= 10,000 records/s.
# Writes target/bench/{svid-bench.json,svid-summary.md} and prints the summary.
# Usage: scripts/bench-svid.sh [twi bench-svid flags, e.g. --iterations 1000 --log-seconds 3]
# SPIRE: $SPIRE_BIN_DIR, else target/spire (built by scripts/ensure-spire.sh, which needs Go).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
out="$target_dir/bench"
mkdir -p "$out"

echo "== building twi and twi-server-credentialcomposer (release)" >&2
cargo build --release --quiet -p twi --bin twi -p twi-credential-composer --bin twi-server-credentialcomposer
spire_dir=$(scripts/ensure-spire.sh | tail -n 1)

echo "== twi bench-svid (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
"$target_dir/release/twi" bench-svid --json --spire-bin-dir "$spire_dir" \
  --composer-bin "$target_dir/release/twi-server-credentialcomposer" "$@" > "$out/svid-bench.json"

python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
r = json.load(open(os.path.join(out, "svid-bench.json")))
m = r["machine"]
t = r["latency_target_ratio"]
def us(ns): return f"{ns/1000:.1f} µs"
def mark(ok): return "met" if ok else "MISSED"
lines = [
    f"Machine: {m['cpu_model']}, {m['nproc']} CPUs; date {r['date']}; {r['profile']} build; SPIRE {r['spire_version']}",
    f"Load average at start {m['loadavg_start']}, at end {m['loadavg_end']}",
    "",
]
missed = []
i = r.get("issuance")
if i:
    lines += [f"X.509-SVID issuance, MintX509SVID on the local API socket (EAR from {i['ear_source']}; {i['warmup']} warm-up calls per server).",
              "A = SPIRE alone, N = SPIRE + a pass-through composer plugin (the cost of any external composer), B = SPIRE + twi-server-credentialcomposer.", "",
              "| load | A p50 | A p99 | N p50 | N p99 | B p50 | B p99 | B/A p50 (<= %.2f) | B/A p99 (<= %.2f) | N/A p50 | B/N p50 |" % (t, t),
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = [(f"sequential, interleaved, n = {i['sequential']['plain']['n']}", i["sequential"])]
    c = i.get("concurrent")
    if c:
        rows.append((f"{c['concurrency']} in flight, n = {c['calls_per_server']}", c["latency"]))
    for name, p in rows:
        lines.append(f"| {name} | {us(p['plain']['p50_ns'])} | {us(p['plain']['p99_ns'])} | {us(p['passthrough']['p50_ns'])} | {us(p['passthrough']['p99_ns'])} | "
                     f"{us(p['composed']['p50_ns'])} | {us(p['composed']['p99_ns'])} | {p['p50_ratio']:.3f} {mark(p['p50_met'])} | {p['p99_ratio']:.3f} {mark(p['p99_met'])} | "
                     f"{p['passthrough_p50_ratio']:.3f} | {p['composed_over_passthrough_p50']:.3f} |")
        if not p["p50_met"]: missed.append(f"{name} p50")
        if not p["p99_met"]: missed.append(f"{name} p99")
    if c:
        lines += ["", f"Throughput with {c['concurrency']} in flight: A {c['plain_svids_per_s']:.0f}, N {c['passthrough_svids_per_s']:.0f}, B {c['composed_svids_per_s']:.0f} SVIDs/s (B/A {c['throughput_ratio']:.3f}); "
                  f"B's SVIDs went into {c['composed_log_batches']} log batches (mean {c['composed_mean_batch']:.2f} per fsync round)."]
    lines += ["", f"Server B issued {i['composed_svids']} SVIDs, each checked for both TWI extensions; its log holds {i['composed_log_size']} records."]
b = r.get("breakdown")
if b:
    lines += ["", f"Composer steps in-process ({b['iterations']} iterations)", "", "| step | p50 | p99 |", "|---|---|---|"]
    for key, name in [("compose_total", "compose_workload_x509, total"), ("ear_read", "EAR read (SQLite store)"),
                      ("entry_lookup", "entry lookup (local API, cached)"), ("record_and_sign", "record + Ed25519 statement"),
                      ("extensions", "CMW + TwiProvenance encoding"), ("append_default", "log append via sequencer (default config)"),
                      ("append_direct", "Log::append_batch, no sequencer"), ("raw_fsync", "raw write + fdatasync")]:
        lines.append(f"| {name} | {us(b[key]['p50_ns'])} | {us(b[key]['p99_ns'])} |")
a = r.get("attribution")
if a:
    lines += ["", f"Added p50 (sequential, B - A) {us(a['added_p50_ns'])} = the plugin call (N - A) {us(a['plugin_call_p50_ns'])} + our composer's work (B - N) {us(a['composer_work_p50_ns'])}; "
              f"in-process the composer takes {us(a['compose_p50_ns'])} at p50, of which the durable log append {us(a['log_append_p50_ns'])}.",
              f"Floor for any composer that makes each record durable before answering, on this disk: B/A p50 >= {a['durable_floor_p50_ratio']:.3f} (A p50 + one raw write+fdatasync)."]
l = r.get("log")
if l:
    lines += ["", f"Log durable append rate ({l['sequencer']}; statements {l['statement_bytes_min']}–{l['statement_bytes_max']} bytes, mean {l['statement_bytes_mean']}; {l['seconds_per_level']:.1f} s per level)", "",
              "| appenders | records/s | raw write+fdatasync/s (same disk, just before) | ratio | mean batch | append p50 | append p99 |", "|---|---|---|---|---|---|---|"]
    for v in l["levels"]:
        lines.append(f"| {v['appenders']} | {v['records_per_s']:.0f} | {v['raw_fsync_per_s']:.0f} | {v['over_raw_fsync']:.2f} | {v['mean_batch']:.1f} | "
                     f"{us(v['append_latency']['p50_ns'])} | {us(v['append_latency']['p99_ns'])} |")
    lines += ["", f"Best: {l['best_records_per_s']:.0f} records/s (target >= {l['target_records_per_s']:.0f}: {mark(l['target_met'])})"]
    if not l["target_met"]: missed.append("log append rate")
lines += ["", "Targets missed: " + (", ".join(missed) if missed else "none")]
text = "\n".join(lines) + "\n"
open(os.path.join(out, "svid-summary.md"), "w").write(text)
print(text)
EOF
