#!/usr/bin/env bash
# Training-step speed of the Deep Packet application CNN (FC 200-100-50, 10.1 M parameters,
# batch 64, 2 threads): privpkt beside PyTorch (+ Opacus) in one run, ratios printed, for the
# non-private step and the DP-SGD step (privpkt's one-backward per-example clipping against
# Opacus ghost clipping).
#
#   bash bench/train_bench.sh            # creates .venv-anchor with torch + opacus on first use (~5 GB)
#
# The anchor script lives in ../shared/anchors (beside the repository); results go to
# bench/results/train-<date>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
anchor=../shared/anchors/opacus_deeppacket.py
[ -f "$anchor" ] || { echo "SKIPPED: $anchor not found (it ships beside the repository)"; exit 0; }
if [ ! -x .venv-anchor/bin/python ] || ! .venv-anchor/bin/python -c "import torch, opacus" 2>/dev/null; then
  python3 -m venv .venv-anchor
  .venv-anchor/bin/pip install -q torch opacus
fi
cargo build --release -q -p privpkt-nn --example train_speed
mkdir -p bench/results
out=bench/results/train-$(date -u +%Y-%m-%dT%H%M%S).json
echo "== privpkt (burn Flex CPU backend)"
privpkt_json=$(target/release/examples/train_speed --batch 64 --iters 10 --warmup 2 --conv all --optimizer sgd --dp)
echo "$privpkt_json"
echo "== PyTorch $(.venv-anchor/bin/python -c 'import torch; print(torch.__version__)') + Opacus"
torch_out=$(.venv-anchor/bin/python "$anchor" --threads 2 --batch 64 --iters 5 --fc 200,100,50 --skip-naive --skip-hooks 2>&1)
echo "$torch_out"
PRIVPKT_JSON="$privpkt_json" TORCH_OUT="$torch_out" OUT="$out" python3 - <<'PY'
import json, os, re
rows = [json.loads(l) for l in os.environ["PRIVPKT_JSON"].splitlines() if l.strip().startswith("{")]
t = os.environ["TORCH_OUT"]
m = re.search(r"non-private: [0-9.]+ s/step\s+([0-9.]+) samples/s", t)
torch_np = float(m.group(1)) if m else None
g = re.search(r"opacus DP-SGD \(ghost\): [0-9.]+ s/step\s+([0-9.]+) samples/s", t)
ghost = float(g.group(1)) if g else None
print()
print(f"{'implementation':<34} {'samples/s':>10} {'x PyTorch':>10}")
for r in rows:
    sps = r.get("samples_per_s")
    name = f"privpkt ({r.get('conv')})"
    ratio = f"{sps / torch_np:.2f}" if (sps and torch_np) else "-"
    print(f"{name:<34} {sps:>10.1f} {ratio:>10}")
if torch_np:
    print(f"{'PyTorch non-private':<34} {torch_np:>10.1f} {1.0:>10.2f}")
if ghost:
    print(f"{'Opacus ghost clipping (DP)':<34} {ghost:>10.1f} {ghost / torch_np:>10.2f}")
for r in rows:
    if r.get("dp_samples_per_s"):
        dps = r["dp_samples_per_s"]
        print(f"{'privpkt DP-SGD (' + r.get('conv') + ')':<34} {dps:>10.1f} {dps / torch_np:>10.2f}" if torch_np else "")
        print()
        print(f"privpkt DP step / privpkt non-private step: {r['dp_over_non_private']:.2f}x time (goal <= 1.3)")
        if ghost:
            print(f"privpkt DP-SGD / Opacus ghost clipping:     {dps / ghost:.2f}x samples/s (goal >= 2)")
        print(f"privpkt peak RSS: {r.get('peak_rss_mib', 0):.0f} MiB")
json.dump({"privpkt": rows, "torch_non_private": torch_np, "opacus_ghost": ghost, "torch_output": t},
          open(os.environ["OUT"], "w"), indent=1)
print("written", os.environ["OUT"])
PY
