#!/usr/bin/env bash
# Side-by-side benchmark: `privpkt prepare` (Deep Packet) vs the Python reference
# (bench/deeppacket_ref.py) on the same inputs, same settings, same machine, one after the other.
# The reference runs twice: `--decoder dpkt` (dpkt's readers and protocol classes, the way research
# code is written: the throughput baseline) and `--decoder raw` (hand-written decoding, byte-exact
# with privpkt: the correctness check). bench/compare_vectors.py then checks privpkt's vectors
# against both.
#
#   bench/prepare_bench.sh
#
# Environment:
#   PRIVPKT_BENCH_SIZE       size of the synthetic set (default 2GB; e.g. 200MB for a quick run)
#   PRIVPKT_BENCH_SYNTH_DIR  where the synthetic set lives (default target/bench-synth-<SIZE>-seed7;
#                            reused while its .stamp matches, regenerated otherwise)
#   PRIVPKT_BENCH_INPUTS     which inputs to run: "ndpi synth" (default), "ndpi" or "synth"
#   PRIVPKT_BENCH_KEEP_SYNTH set to 0 to delete the synthetic set at the end
#   PRIVPKT_BENCH_MAX_LOAD   before each timed run, wait until the 1-minute load average is below
#                            this (default 0.7), polling every 10 s ...
#   PRIVPKT_BENCH_LOAD_WAIT  ... for at most this many seconds (default 600), then run anyway; the
#                            load and the wait are recorded with the run
#
# Prints a table (tool, seconds, MB/s, packets/s, peak RSS, samples, privpkt/python throughput
# ratios, load) and writes it to bench/results/prepare-<date>.json. Only the ratios of a
# side-by-side run mean anything: absolute figures depend on the machine and on what else runs on it.
#
# Exit status: non-zero if a tool fails or privpkt's vectors differ from the raw reference's.
# Differences from the dpkt reference are reported (count and kind), not failed on.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SIZE=${PRIVPKT_BENCH_SIZE:-2GB}
INPUTS=${PRIVPKT_BENCH_INPUTS:-ndpi synth}
SYNTH_DIR=${PRIVPKT_BENCH_SYNTH_DIR:-target/bench-synth-${SIZE}-seed7}
KEEP_SYNTH=${PRIVPKT_BENCH_KEEP_SYNTH:-1}
MAX_LOAD=${PRIVPKT_BENCH_MAX_LOAD:-0.7}
LOAD_WAIT=${PRIVPKT_BENCH_LOAD_WAIT:-600}
NDPI=../shared/data/ndpi
VENV=.venv-bench
PY=$VENV/bin/python
PIP_PINS=(dpkt==1.9.8 numpy==2.4.6)
BIN=target/release/privpkt
# float timestamps in the dpkt decoder: within 1 µs counts as the same timestamp
DPKT_TS_TOLERANCE_NS=1000

TMP=$(mktemp -d "${TMPDIR:-/tmp}/privpkt-bench.XXXXXX")
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '== %s\n' "$*" >&2; }

# --- Python environment ----------------------------------------------------------------------
if [ ! -x "$PY" ]; then
    PYTHON=$(command -v python3.11 || command -v python3)
    say "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
if ! "$PY" -c 'import dpkt, numpy, sys; sys.exit(0 if (dpkt.__version__, numpy.__version__) == ("1.9.8", "2.4.6") else 1)' 2>/dev/null; then
    say "installing ${PIP_PINS[*]} into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PIP_PINS[@]}"
fi

# --- privpkt ---------------------------------------------------------------------------------
say "building privpkt (release)"
cargo build --release -p privpkt
PRIVPKT_VERSION=$("$BIN" --version)

TIME_V=""
if /usr/bin/time -v true 2>/dev/null; then TIME_V=/usr/bin/time; fi

RUNS="$TMP/runs.jsonl"
: > "$RUNS"
STATUS=0

# wait_for_quiet: poll the 1-minute load average every 10 s until it is below MAX_LOAD, for at
# most LOAD_WAIT seconds. Sets LOAD (the last reading), WAITED (seconds) and QUIET (1 or 0).
wait_for_quiet() {
    LOAD="" WAITED=0 QUIET=1
    [ -r /proc/loadavg ] || return 0
    while :; do
        LOAD=$(cut -d' ' -f1 /proc/loadavg)
        if awk -v l="$LOAD" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }'; then
            QUIET=1
            return 0
        fi
        if [ "$WAITED" -ge "$LOAD_WAIT" ]; then
            QUIET=0
            say "load average still $LOAD after ${WAITED}s: running anyway (recorded)"
            return 0
        fi
        if [ $((WAITED % 60)) -eq 0 ]; then
            say "load average $LOAD >= $MAX_LOAD: waiting (${WAITED}s of at most ${LOAD_WAIT}s)"
        fi
        sleep 10
        WAITED=$((WAITED + 10))
    done
}

# run_timed NAME INPUT TOOL THREADS DECODER CMD... : waits for a quiet machine, re-reads the inputs
# into the page cache, then times CMD (wall time with date, peak RSS from /usr/bin/time -v)
run_timed() {
    local name=$1 input=$2 tool=$3 threads=$4 decoder=$5
    shift 5
    local t0 t1 rc=0
    wait_for_quiet
    find "${INPUT_PATHS[@]}" -type f -exec cat {} + > /dev/null
    say "$input: $tool ($threads thread(s)); load average before: ${LOAD:-?} (waited ${WAITED}s)"
    t0=$(date +%s.%N)
    if [ -n "$TIME_V" ]; then
        "$TIME_V" -v -o "$TMP/$name.time" "$@" > "$TMP/$name.json" 2> "$TMP/$name.err" || rc=$?
    else
        "$@" > "$TMP/$name.json" 2> "$TMP/$name.err" || rc=$?
    fi
    t1=$(date +%s.%N)
    if [ "$rc" -ne 0 ]; then
        say "$tool failed (exit $rc):"
        tail -20 "$TMP/$name.err" >&2
        STATUS=1
        return 0
    fi
    "$PY" - "$TMP/$name" "$input" "$tool" "$threads" "$decoder" "$t0" "$t1" "$LOAD" "$WAITED" "$QUIET" \
        >> "$RUNS" <<'EOF'
import json, re, sys
base, inp, tool, threads, decoder, t0, t1, load, waited, quiet = sys.argv[1:]
wall = float(t1) - float(t0)
j = json.load(open(base + ".json"))
rss = None
try:
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(base + ".time").read())
    rss = int(m.group(1)) * 1024 if m else None
except OSError:
    pass
if tool.startswith("privpkt"):
    packets, internal_s = j["totals"]["records"], j["seconds"]
else:
    packets, internal_s = j["packets"], j["seconds"]
print(json.dumps({
    "input": inp, "tool": tool, "decoder": decoder or None, "threads": int(threads),
    "wall_s": wall, "internal_s": internal_s,
    "files": j.get("captures", j.get("files")), "bytes": j["bytes"], "packets": packets,
    "samples": j["samples"], "peak_rss_bytes": rss if rss is not None else j.get("peak_rss_bytes"),
    "peak_rss_source": "/usr/bin/time -v" if rss is not None else "tool JSON",
    "mb_per_s": j["bytes"] / 1e6 / wall, "packets_per_s": packets / wall,
    "loadavg_1min_before": float(load) if load else None,
    "load_wait_s": int(waited), "load_below_threshold": quiet == "1",
    "skipped": j.get("skipped"),
}))
EOF
}

# compare NAME PRIVPKT_DIR REF_DIR [ARGS...]: compare_vectors.py; returns its exit status
compare() {
    local name=$1 p=$2 r=$3 rc=0
    shift 3
    "$PY" bench/compare_vectors.py "$p" "$r" --json-out "$TMP/$name.json" "$@" \
        > "$TMP/$name.txt" 2>&1 || rc=$?
    grep -v '^  {' "$TMP/$name.txt" | tail -12 >&2 || true
    return "$rc"
}

# bench_input NAME LABELS_CSV LABEL_COLUMN INPUT_PATHS...
# Order: privpkt (all threads, kept), privpkt (1 thread), reference raw (compared, deleted),
# reference dpkt (compared, deleted): at most two datasets on disk at a time.
bench_input() {
    local input=$1 labels=$2 column=$3
    shift 3
    INPUT_PATHS=("$@")
    local common=(--labels "$labels" --label-column "$column" --repr deeppacket --max-per-flow 0)
    local P="$TMP/$input-privpkt" P1="$TMP/$input-privpkt-1t" RR="$TMP/$input-ref-raw" RD="$TMP/$input-ref-dpkt"
    run_timed "$input-privpkt" "$input" "privpkt" "$(nproc)" "" \
        "$BIN" prepare "$@" "${common[@]}" --json --force --out "$P"
    run_timed "$input-privpkt-1t" "$input" "privpkt-1-thread" 1 "" \
        env RAYON_NUM_THREADS=1 "$BIN" prepare "$@" "${common[@]}" --json --force --out "$P1"
    rm -rf "$P1"
    run_timed "$input-python-raw" "$input" "python-raw" 1 raw \
        "$PY" bench/deeppacket_ref.py "$@" "${common[@]}" --decoder raw --out "$RR"
    if [ -d "$P" ] && [ -d "$RR" ]; then
        say "$input: comparing privpkt's vectors with the raw reference's (must match)"
        compare "$input-compare-raw" "$P" "$RR" || STATUS=1
        cp "$RR/summary.json" "$TMP/$input-ref-raw-summary.json"
    else
        STATUS=1
    fi
    rm -rf "$RR"
    run_timed "$input-python-dpkt" "$input" "python-dpkt" 1 dpkt \
        "$PY" bench/deeppacket_ref.py "$@" "${common[@]}" --decoder dpkt --out "$RD"
    if [ -d "$P" ] && [ -d "$RD" ]; then
        say "$input: comparing privpkt's vectors with the dpkt reference's (differences reported, not failed on)"
        local rc=0
        compare "$input-compare-dpkt" "$P" "$RD" --ts-tolerance-ns "$DPKT_TS_TOLERANCE_NS" || rc=$?
        if [ "$rc" -ge 2 ]; then STATUS=1; fi
        cp "$RD/summary.json" "$TMP/$input-ref-dpkt-summary.json"
    fi
    rm -rf "$P" "$RD"
}

for input in $INPUTS; do
    case "$input" in
    ndpi)
        if [ -d "$NDPI/pcap" ] && [ -f "$NDPI/flows_labels.csv" ]; then
            bench_input ndpi "$NDPI/flows_labels.csv" category "$NDPI/pcap"
        else
            say "skipping the nDPI corpus: $NDPI not found (it lives outside the repository)"
        fi
        ;;
    synth)
        STAMP="synth --size $SIZE --seed 7 | generator $(cat crates/synth/src/*.rs crates/privpkt/src/cmd_synth.rs | sha256sum | cut -c1-16)"
        if [ -f "$SYNTH_DIR/.stamp" ] && [ "$(cat "$SYNTH_DIR/.stamp")" = "$STAMP" ]; then
            say "reusing $SYNTH_DIR ($STAMP)"
        else
            say "generating $SYNTH_DIR: privpkt synth --out $SYNTH_DIR --size $SIZE --seed 7"
            rm -rf "$SYNTH_DIR"
            "$BIN" synth --out "$SYNTH_DIR" --size "$SIZE" --seed 7 >&2
            printf '%s' "$STAMP" > "$SYNTH_DIR/.stamp"
        fi
        bench_input "synth-$SIZE" "$SYNTH_DIR/flows_labels.csv" category "$SYNTH_DIR"
        if [ "$KEEP_SYNTH" = "0" ]; then rm -rf "$SYNTH_DIR"; fi
        ;;
    *)
        say "unknown input '$input' (expected ndpi or synth)"
        exit 2
        ;;
    esac
done

# --- table and results file ------------------------------------------------------------------
mkdir -p bench/results
OUT="bench/results/prepare-$(date +%Y-%m-%dT%H%M%S).json"
"$PY" - "$RUNS" "$TMP" "$OUT" "$PRIVPKT_VERSION" "$MAX_LOAD" "$LOAD_WAIT" <<'EOF'
import json, os, platform, subprocess, sys
runs_path, tmp, out, pv, max_load, load_wait = sys.argv[1:]
runs = [json.loads(l) for l in open(runs_path) if l.strip()]


def sh(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return None


def load(path):
    return json.load(open(path)) if os.path.exists(path) else None


cpu = None
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except Exception:
    pass
import dpkt, numpy


def dpkt_kinds(cmp, raw_sum, dpkt_sum):
    """Why each capture differs between privpkt and the dpkt reference, from the two reference
    summaries (per-capture skip counters, pcapng interfaces)."""
    if not cmp:
        return None
    by_name = lambda s: {os.path.basename(c["path"]): c for c in (s or {}).get("captures", [])}
    raw_c, dp_c = by_name(raw_sum), by_name(dpkt_sum)
    kinds = {}
    for d in cmp.get("captures_differing", []):
        name = os.path.basename(d["capture"])
        r, k = raw_c.get(name, {}), dp_c.get(name, {})
        ifaces = {(i[0], i[1], i[2]) for i in r.get("pcapng_interfaces", [])}
        links = sorted({w.split()[2] for w in k.get("skipped", {}) if w.startswith("link type ")})
        if links:
            why = f"link type {', '.join(links)} not decoded in dpkt mode"
        elif k.get("stopped_early"):
            why = "dpkt cannot read the file to its end (" + k["stopped_early"].split(":")[0] + ")"
        elif len(ifaces) > 1:
            why = ("pcapng interfaces with different time resolutions / link types: "
                   "dpkt.pcapng.Reader applies the first interface's to every packet")
        elif r.get("skipped"):
            why = "corrupt records: privpkt resynchronises, dpkt reads through them"
        else:
            why = ("packets decoded differently (e.g. dpkt takes a bad IP version nibble as IPv4, "
                   "follows MPLS, decodes at most 2 VLAN tags, stops at IPv4 AH)")
        e = kinds.setdefault(why, {"captures": 0, "privpkt_samples": 0, "reference_samples": 0,
                                   "same_vectors_other_flow_ids": 0, "examples": []})
        e["captures"] += 1
        e["privpkt_samples"] += d["privpkt_samples"]
        e["reference_samples"] += d["reference_samples"]
        e["same_vectors_other_flow_ids"] += int(d["same_vectors_other_flow_ids"])
        if len(e["examples"]) < 8:
            e["examples"].append(name)
    return kinds


def cmp_block(cmp):
    if not cmp:
        return None
    return {k: v for k, v in cmp.items() if k not in ("details", "captures_differing")}


inputs = []
for name in dict.fromkeys(r["input"] for r in runs):
    rows = [r for r in runs if r["input"] == name]
    py = {r["decoder"]: r for r in rows if r["tool"].startswith("python")}
    for r in rows:
        for dec in ("raw", "dpkt"):
            r[f"ratio_vs_python_{dec}"] = (r["mb_per_s"] / py[dec]["mb_per_s"]) if dec in py else None
    craw = load(os.path.join(tmp, f"{name}-compare-raw.json"))
    cdp = load(os.path.join(tmp, f"{name}-compare-dpkt.json"))
    raw_sum = load(os.path.join(tmp, f"{name}-ref-raw-summary.json"))
    dp_sum = load(os.path.join(tmp, f"{name}-ref-dpkt-summary.json"))
    inputs.append({
        "input": name, "runs": rows,
        "vectors_match_raw": craw["match"] if craw else None,
        "compare_raw": cmp_block(craw),
        "compare_raw_details": craw["details"][:20] if craw else None,
        "vectors_match_dpkt": cdp["match"] if cdp else None,
        "compare_dpkt": cmp_block(cdp),
        "dpkt_differences": dpkt_kinds(cdp, raw_sum, dp_sum),
        "dpkt_captures_differing": cdp["captures_differing"] if cdp else None,
        "dpkt_reference_skipped": (dp_sum or {}).get("skipped"),
    })
res = {
    "kind": "privpkt prepare (Deep Packet, --max-per-flow 0) vs the Python reference "
            "(--decoder dpkt and --decoder raw), side by side",
    "date": sh("date", "-Iseconds"),
    "git_commit": sh("git", "rev-parse", "HEAD"),
    "git_dirty": bool(sh("git", "status", "--porcelain", "--untracked-files=no")),
    "privpkt_version": pv,
    "python": platform.python_version(), "dpkt": dpkt.__version__, "numpy": numpy.__version__,
    "machine": {"cpus": os.cpu_count(), "cpu": cpu, "kernel": platform.release()},
    "load_policy": {"max_loadavg_1min": float(max_load), "max_wait_s": int(load_wait), "poll_s": 10},
    "note": "seconds = wall clock of the whole process; MB/s and packets/s over that; "
            "ratio_vs_python_X = MB/s / MB/s of the reference with --decoder X. python-dpkt is the "
            "researcher-with-dpkt baseline, python-raw the byte-exact correctness reference. "
            "privpkt reads files in parallel (rayon); the 1-thread row pins it to one core like the "
            "reference. A run with load_below_threshold false started on a busy machine: rerun "
            "before quoting.",
    "inputs": inputs,
}
with open(out, "w") as fh:
    json.dump(res, fh, indent=1)


def h(b):
    if b is None:
        return "?"
    for u in ("B", "KiB", "MiB", "GiB"):
        if b < 1024 or u == "GiB":
            return f"{b:.0f} {u}" if u == "B" else f"{b:.1f} {u}"
        b /= 1024


def ratio(x):
    return f"{x:.2f}" if x else "-"


print()
print(f"{'input':<14} {'tool':<18} {'seconds':>9} {'MB/s':>8} {'packets/s':>10} {'peak RSS':>10} "
      f"{'samples':>9} {'x py-dpkt':>9} {'x py-raw':>8} {'load':>5}")
for inp in inputs:
    for r in inp["runs"]:
        tool = r["tool"] if r["tool"] != "privpkt" else f"privpkt ({r['threads']} thr)"
        ld = r["loadavg_1min_before"]
        ld = "?" if ld is None else f"{ld:.2f}" + ("" if r["load_below_threshold"] else "!")
        print(f"{inp['input']:<14} {tool:<18} {r['wall_s']:>9.2f} {r['mb_per_s']:>8.1f} "
              f"{r['packets_per_s']:>10.0f} {h(r['peak_rss_bytes']):>10} {r['samples']:>9} "
              f"{ratio(r['ratio_vs_python_dpkt']):>9} {ratio(r['ratio_vs_python_raw']):>8} {ld:>5}")
    m = inp["vectors_match_raw"]
    print(f"{'':<14} vectors vs python-raw:  {'MATCH' if m else 'MISMATCH' if m is False else 'not compared'}")
    m, c = inp["vectors_match_dpkt"], inp["compare_dpkt"]
    if m is None:
        print(f"{'':<14} vectors vs python-dpkt: not compared")
    elif m:
        print(f"{'':<14} vectors vs python-dpkt: MATCH")
    else:
        print(f"{'':<14} vectors vs python-dpkt: differ in {len(inp['dpkt_captures_differing'])} of "
              f"{c['captures_compared']} captures ({c['privpkt_samples']} vs {c['reference_samples']} samples):")
        for why, e in sorted(inp["dpkt_differences"].items(), key=lambda kv: -kv[1]["captures"]):
            print(f"{'':<16}{e['captures']} capture(s), samples {e['privpkt_samples']} vs "
                  f"{e['reference_samples']}: {why} (e.g. {', '.join(e['examples'][:3])})")
if any(not r["load_below_threshold"] for i in inputs for r in i["runs"]):
    print(f"\n! = the 1-minute load average was still >= {max_load} after waiting: rerun on a quiet machine")
print(f"\nwritten to {out}")
EOF
exit "$STATUS"
