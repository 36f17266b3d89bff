#!/usr/bin/env bash
# Side-by-side benchmark: `privpkt prepare` (Deep Packet) vs the Python/dpkt reference
# (bench/deeppacket_ref.py) on the same inputs, same settings, same machine, one after the other;
# then bench/compare_vectors.py checks that both produced the same vectors.
#
#   bench/prepare_bench.sh
#
# Environment:
#   PRIVPKT_BENCH_SIZE       size of the synthetic set (default 2GB; e.g. 200MB for a quick run)
#   PRIVPKT_BENCH_SYNTH_DIR  where the synthetic set lives (default target/bench-synth-<SIZE>-seed7;
#                            reused while its .stamp matches, regenerated otherwise)
#   PRIVPKT_BENCH_INPUTS     which inputs to run: "ndpi synth" (default), "ndpi" or "synth"
#   PRIVPKT_BENCH_KEEP_SYNTH set to 0 to delete the synthetic set at the end
#
# Prints a table (tool, seconds, MB/s, packets/s, peak RSS, samples, privpkt/python throughput
# ratio) and writes it to bench/results/prepare-<date>.json. Only the ratio of a side-by-side run
# means anything: absolute figures depend on the machine and on what else runs on it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SIZE=${PRIVPKT_BENCH_SIZE:-2GB}
INPUTS=${PRIVPKT_BENCH_INPUTS:-ndpi synth}
SYNTH_DIR=${PRIVPKT_BENCH_SYNTH_DIR:-target/bench-synth-${SIZE}-seed7}
KEEP_SYNTH=${PRIVPKT_BENCH_KEEP_SYNTH:-1}
NDPI=../shared/data/ndpi
VENV=.venv-bench
PY=$VENV/bin/python
PIP_PINS=(dpkt==1.9.8 numpy==2.4.6)
BIN=target/release/privpkt

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
flock /tmp/privpkt-cargo.lock cargo build --release -p privpkt
PRIVPKT_VERSION=$("$BIN" --version)

TIME_V=""
if /usr/bin/time -v true 2>/dev/null; then TIME_V=/usr/bin/time; fi

RUNS="$TMP/runs.jsonl"
: > "$RUNS"
STATUS=0

# run_timed NAME INPUT TOOL THREADS CMD... : wall time with date, peak RSS from /usr/bin/time -v
run_timed() {
    local name=$1 input=$2 tool=$3 threads=$4
    shift 4
    local t0 t1 rc=0 load
    load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "")
    say "$input: $tool ($threads thread(s)); load average before: ${load:-?}"
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
    "$PY" - "$TMP/$name" "$input" "$tool" "$threads" "$t0" "$t1" "$load" >> "$RUNS" <<'EOF'
import json, re, sys
base, inp, tool, threads, t0, t1, load = sys.argv[1:]
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
    "input": inp, "tool": tool, "threads": int(threads), "wall_s": wall, "internal_s": internal_s,
    "files": j.get("captures", j.get("files")), "bytes": j["bytes"], "packets": packets,
    "samples": j["samples"], "peak_rss_bytes": rss if rss is not None else j.get("peak_rss_bytes"),
    "peak_rss_source": "/usr/bin/time -v" if rss is not None else "tool JSON",
    "mb_per_s": j["bytes"] / 1e6 / wall, "packets_per_s": packets / wall,
    "loadavg_1min_before": float(load) if load else None,
}))
EOF
}

# bench_input NAME LABELS_CSV LABEL_COLUMN INPUT_PATHS...
bench_input() {
    local input=$1 labels=$2 column=$3
    shift 3
    local common=(--labels "$labels" --label-column "$column" --max-per-flow 0)
    say "$input: warming the page cache"
    find "$@" -type f -exec cat {} + > /dev/null
    local P="$TMP/$input-privpkt" P1="$TMP/$input-privpkt-1t" R="$TMP/$input-ref"
    run_timed "$input-privpkt" "$input" "privpkt" "$(nproc)" \
        "$BIN" prepare "$@" "${common[@]}" --json --force --out "$P"
    run_timed "$input-privpkt-1t" "$input" "privpkt-1-thread" 1 \
        env RAYON_NUM_THREADS=1 "$BIN" prepare "$@" "${common[@]}" --json --force --out "$P1"
    rm -rf "$P1"
    run_timed "$input-python" "$input" "python-dpkt" 1 \
        "$PY" bench/deeppacket_ref.py "$@" "${common[@]}" --out "$R"
    if [ -d "$P" ] && [ -d "$R" ]; then
        say "$input: comparing vectors"
        local rc=0
        "$PY" bench/compare_vectors.py "$P" "$R" --json-out "$TMP/$input-compare.json" \
            > "$TMP/$input-compare.txt" 2>&1 || rc=$?
        tail -25 "$TMP/$input-compare.txt" >&2
        if [ "$rc" -ne 0 ]; then STATUS=1; fi
    else
        STATUS=1
    fi
    rm -rf "$P" "$R"
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
"$PY" - "$RUNS" "$TMP" "$OUT" "$PRIVPKT_VERSION" "$STATUS" <<'EOF'
import json, os, platform, subprocess, sys
runs_path, tmp, out, pv, status = sys.argv[1:]
runs = [json.loads(l) for l in open(runs_path) if l.strip()]
def sh(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return None
cpu = None
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except Exception:
    pass
import dpkt, numpy
inputs = []
for name in dict.fromkeys(r["input"] for r in runs):
    rows = [r for r in runs if r["input"] == name]
    py = next((r for r in rows if r["tool"] == "python-dpkt"), None)
    for r in rows:
        r["ratio_vs_python"] = (r["mb_per_s"] / py["mb_per_s"]) if py else None
    cmp_path = os.path.join(tmp, f"{name}-compare.json")
    cmp = json.load(open(cmp_path)) if os.path.exists(cmp_path) else None
    inputs.append({"input": name, "runs": rows,
                   "vectors_match": cmp["match"] if cmp else None,
                   "compare": {k: v for k, v in cmp.items() if k != "details"} if cmp else None,
                   "compare_details": cmp["details"][:20] if cmp else None})
res = {
    "kind": "privpkt prepare (Deep Packet, --max-per-flow 0) vs Python/dpkt reference, side by side",
    "date": sh("date", "-Iseconds"),
    "git_commit": sh("git", "rev-parse", "HEAD"),
    "git_dirty": bool(sh("git", "status", "--porcelain", "--untracked-files=no")),
    "privpkt_version": pv,
    "python": platform.python_version(), "dpkt": dpkt.__version__, "numpy": numpy.__version__,
    "machine": {"cpus": os.cpu_count(), "cpu": cpu, "kernel": platform.release()},
    "note": "seconds = wall clock of the whole process; MB/s and packets/s over that; ratio = MB/s / python MB/s. "
            "privpkt reads files in parallel (rayon); the 1-thread row pins it to one core like the reference. "
            "loadavg_1min_before > 0.5 means something else was running: rerun on a quiet machine before quoting.",
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
print()
print(f"{'input':<14} {'tool':<18} {'seconds':>9} {'MB/s':>9} {'packets/s':>11} {'peak RSS':>10} {'samples':>10} {'x python':>9}")
for inp in inputs:
    for r in inp["runs"]:
        ratio = f"{r['ratio_vs_python']:.2f}" if r["ratio_vs_python"] else "-"
        tool = r["tool"] if r["tool"] != "privpkt" else f"privpkt ({r['threads']} thr)"
        print(f"{inp['input']:<14} {tool:<18} {r['wall_s']:>9.2f} {r['mb_per_s']:>9.1f} {r['packets_per_s']:>11.0f} "
              f"{h(r['peak_rss_bytes']):>10} {r['samples']:>10} {ratio:>9}")
    m = inp["vectors_match"]
    print(f"{'':<14} vectors: {'MATCH' if m else 'MISMATCH' if m is False else 'not compared'}")
print(f"\nwritten to {out}")
EOF
exit "$STATUS"
