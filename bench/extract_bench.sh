#!/usr/bin/env bash
# Flow-behaviour extraction speed: privpkt prepare --repr behaviour (series of 30 packets with 16 payload
# bytes, whole-flow statistics, labels joined, dataset written) beside nfstream (statistics + the first 20
# packets' splt series, nDPI dissection off: what the nfstream + LightGBM peer runs), one after the other on
# the same captures: a synthetic set of ≥ 300 MB and the nDPI corpus. Packets/s, flows/s and peak RSS; the
# ratio is what to quote.
#
#   bash bench/extract_bench.sh              # creates .venv-peer (nfstream) on first use
#   SIZE=1GB bash bench/extract_bench.sh
#
# Results: bench/results/extract-<date>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-320MB}
WORK=${WORK:-bench/work/extract}
PEER_VENV=${PEER_VENV:-.venv-peer}
ndpi=../shared/data/ndpi
bin=${PRIVPKT_BIN:-target/release/privpkt}
[ -n "${PRIVPKT_BIN:-}" ] || cargo build --release -q -p privpkt
if [ ! -x "$PEER_VENV/bin/python" ]; then
  python3 -m venv "$PEER_VENV"
  "$PEER_VENV/bin/pip" install -q nfstream lightgbm scikit-learn pandas
fi
mkdir -p "$WORK" bench/results
out=bench/results/extract-$(date -u +%Y-%m-%dT%H%M%S).json
synth="$WORK/synthetic"
[ -f "$synth/flows_labels.csv" ] || $bin synth --out "$synth" --size "$SIZE" --seed 5 --format pcap >/dev/null
runs="$WORK/runs.jsonl"
: >"$runs"

nfstream_time() { # NAME DIR
  "$PEER_VENV/bin/python" - "$1" "$2" >>"$runs" <<'PY'
import glob, json, os, resource, sys, time
from nfstream import NFStreamer
name, d = sys.argv[1:3]
files = sorted(f for f in glob.glob(os.path.join(d, "*")) if os.path.isfile(f) and not f.endswith(".csv"))
t = time.perf_counter()
packets = flows = failed = 0
for f in files:
    try:
        df = NFStreamer(source=f, n_dissections=0, statistical_analysis=True, splt_analysis=20,
                        idle_timeout=120, active_timeout=3600).to_pandas()
    except Exception:
        failed += 1
        continue
    if df is not None and len(df):
        packets += int(df.bidirectional_packets.sum())
        flows += len(df)
s = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"set": name, "tool": "nfstream", "seconds": s, "packets": packets, "flows": flows,
                  "packets_per_s": packets / s, "flows_per_s": flows / s, "peak_rss_bytes": rss,
                  "files_failed": failed}))
PY
}

privpkt_time() { # NAME LABEL_ARGS... -- INPUT
  local name=$1; shift
  local ds="$WORK/$name-ds"
  local j
  j=$($bin prepare "$@" --repr behaviour --payload-bytes 16 --split-by flow --force --out "$ds" --json)
  J="$j" NAME="$name" DS="$ds" python3 - >>"$runs" <<'PY'
import json, os
j = json.loads(os.environ["J"])
m = json.load(open(os.path.join(os.environ["DS"], "manifest.json")))
t = m["totals"]
print(json.dumps({"set": os.environ["NAME"], "tool": "privpkt", "seconds": j["seconds"],
                  "packets": t["tcp_udp_packets"], "flows": t["flows"], "labelled_flows": t["labelled_flows"],
                  "packets_per_s": t["tcp_udp_packets"] / j["seconds"], "flows_per_s": t["flows"] / j["seconds"],
                  "peak_rss_bytes": j["peak_rss_bytes"], "bytes": j["bytes"]}))
PY
}

sync
privpkt_time synthetic "$synth"
nfstream_time synthetic "$synth"
if [ -d "$ndpi/pcap" ]; then
  privpkt_time ndpi "$ndpi/pcap" --labels "$ndpi/flows_labels.csv" --label-column category
  nfstream_time ndpi "$ndpi/pcap"
else
  echo "SKIPPED the nDPI corpus: $ndpi not found"
fi

python3 - "$runs" "$out" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'set':<10} {'tool':<9} {'packets/s':>11} {'flows/s':>9} {'peak RSS':>10}")
for r in runs:
    print(f"{r['set']:<10} {r['tool']:<9} {r['packets_per_s']:>11.0f} {r['flows_per_s']:>9.0f} "
          f"{r['peak_rss_bytes'] / 2**20:>8.0f} MiB")
ratios = {}
for s in dict.fromkeys(r["set"] for r in runs):
    p = next((r for r in runs if r["set"] == s and r["tool"] == "privpkt"), None)
    n = next((r for r in runs if r["set"] == s and r["tool"] == "nfstream"), None)
    if p and n:
        ratios[s] = {"packets_per_s": p["packets_per_s"] / n["packets_per_s"],
                     "flows_per_s": p["flows_per_s"] / n["flows_per_s"]}
        print(f"{s}: privpkt / nfstream = {ratios[s]['packets_per_s']:.1f}x packets/s, "
              f"{ratios[s]['flows_per_s']:.1f}x flows/s")
json.dump({"runs": runs, "ratios": ratios}, open(sys.argv[2], "w"), indent=1)
print("written:", sys.argv[2])
PY
