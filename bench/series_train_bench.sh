#!/usr/bin/env bash
# Training speed of the packet-series network (series-cnn, ≈ 0.25 M parameters on 30-packet series with 16
# payload bytes each and the flow statistics): privpkt beside the same network in PyTorch + Opacus
# (bench/opacus_series.py), in one run on the same machine, non-private and DP-SGD (every flow its own unit,
# clipped to 1, noise σ = 1), ratios printed.
#
#   bash bench/series_train_bench.sh          # creates .venv-anchor with torch + opacus on first use (~5 GB)
#   BATCH=64 ROUNDS=5 bash bench/series_train_bench.sh
#
# The machine's speed drifts from minute to minute, so the two sides run alternately ROUNDS times (3) and the
# ratios are taken within each round; the median round is reported.
# Results: bench/results/series-train-<date>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=${BATCH:-256}
ITERS=${ITERS:-10}
ROUNDS=${ROUNDS:-3}
if [ ! -x .venv-anchor/bin/python ] || ! .venv-anchor/bin/python -c "import torch, opacus" 2>/dev/null; then
  python3 -m venv .venv-anchor
  .venv-anchor/bin/pip install -q torch opacus
fi
cargo build --release -q -p privpkt-nn --example train_speed
mkdir -p bench/results
out=bench/results/series-train-$(date -u +%Y-%m-%dT%H%M%S).json
ours=""
peer=""
for _ in $(seq "$ROUNDS"); do
  ours+=$(target/release/examples/train_speed --arch series-cnn --batch "$BATCH" --iters "$ITERS" --warmup 2 --optimizer sgd --dp)$'\n'
  peer+=$(.venv-anchor/bin/python bench/opacus_series.py --threads "$(nproc)" --batch "$BATCH" --iters "$ITERS")$'\n'
done
OURS="$ours" PEER="$peer" OUT="$out" python3 - <<'PY'
import json, os, statistics
all_ours = [json.loads(l) for l in os.environ["OURS"].splitlines() if l.startswith("{")]
all_peer = [json.loads(l) for l in os.environ["PEER"].splitlines() if l.startswith("{")]
def best_dp(p):
    return max(v for v in (p.get("opacus_hooks_samples_per_s"), p.get("opacus_ghost_samples_per_s")) if v)
per_round = [o["dp_samples_per_s"] / best_dp(p) for o, p in zip(all_ours, all_peer)]
mid = sorted(range(len(per_round)), key=lambda i: per_round[i])[len(per_round) // 2]
ours, peer = all_ours[mid], all_peer[mid]
print("DP ratio per round:", ", ".join(f"{r:.2f}" for r in per_round))
rows = [("privpkt, non-private", ours["samples_per_s"]),
        ("privpkt, DP-SGD", ours["dp_samples_per_s"]),
        (f"{peer['peer']}, non-private", peer["non_private_samples_per_s"]),
        (f"Opacus {peer['opacus']} hooks, DP-SGD", peer.get("opacus_hooks_samples_per_s")),
        (f"Opacus {peer['opacus']} ghost clipping, DP-SGD", peer.get("opacus_ghost_samples_per_s"))]
print(f"series-cnn, batch {ours['batch']}, {ours['params']} parameters (PyTorch: {peer['params']}), "
      f"{ours['threads']} threads")
print(f"{'':<44} {'flows/s':>9}")
for name, v in rows:
    print(f"{name:<44} {v if v is None else round(v, 1)!s:>9}")
ratios = {"non_private_vs_pytorch": ours["samples_per_s"] / peer["non_private_samples_per_s"],
          "dp_vs_best_opacus": ours["dp_samples_per_s"] / best_dp(peer),
          "dp_vs_best_opacus_per_round": per_round}
print(f"privpkt / PyTorch, non-private: {ratios['non_private_vs_pytorch']:.2f}x; "
      f"privpkt DP-SGD / best Opacus mode: {ratios['dp_vs_best_opacus']:.2f}x")
json.dump({"privpkt": ours, "peer": peer, "ratios": ratios, "rounds": {"privpkt": all_ours, "peer": all_peer}},
          open(os.environ["OUT"], "w"), indent=1)
print("written:", os.environ["OUT"])
PY
