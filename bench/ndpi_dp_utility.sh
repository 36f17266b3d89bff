#!/usr/bin/env bash
# Utility of flow-level DP-SGD on real traffic: the nDPI corpus's category_class task, split by
# flow, δ = 1e-5, ε ∈ {1, 2, 4, 8, ∞}, 3 seeds (the split and the training change with the
# seed). The model is Deep Packet's stacked autoencoder without pre-training (greedy
# pre-training would read the private data outside the accountant); ε = ∞ is the same model
# trained without DP. Prints macro-F1 mean ± std on the test split and draws
# bench/results/ndpi-dp-utility-<date>.png (`privpkt plot`).
#
#   bash bench/ndpi_dp_utility.sh          # ~15 min on 2 cores
#
# Environment: SEEDS (1 2 3), EPSILONS (1 2 4 8 inf), EPOCHS (20), BATCH (64 expected flows per
# step), UNIT_CAP (8), CLIP (1.0), OPTIMIZER (sgd, momentum 0.9), LR (0.1: chosen on the validation
# split of seed 1 at ε = 8 among Adam 1e-3/1e-4 and SGD 0.1/0.5; never on test), MAX_PER_FLOW (16), WORK (bench/work/ndpi-dp),
# PRIVPKT_BIN (a prebuilt binary), SUMMARY_ONLY (redraw from recorded runs).
set -euo pipefail
cd "$(dirname "$0")/.."
ndpi=../shared/data/ndpi
[ -d "$ndpi/pcap" ] || { echo "SKIPPED: $ndpi not found (the nDPI corpus ships beside the repository)"; exit 0; }
SEEDS=${SEEDS:-"1 2 3"}
EPSILONS=${EPSILONS:-"1 2 4 8 inf"}
EPOCHS=${EPOCHS:-20}
BATCH=${BATCH:-64}
UNIT_CAP=${UNIT_CAP:-8}
CLIP=${CLIP:-1.0}
LR=${LR:-0.1}
OPTIMIZER=${OPTIMIZER:-sgd}
MAX_PER_FLOW=${MAX_PER_FLOW:-16}
WORK=${WORK:-bench/work/ndpi-dp}
bin=${PRIVPKT_BIN:-target/release/privpkt}
[ -n "${PRIVPKT_BIN:-}" ] || cargo build --release -q -p privpkt
mkdir -p "$WORK" bench/results
stamp=$(date -u +%Y-%m-%dT%H%M%S)
out=bench/results/ndpi-dp-utility-$stamp.json
png=bench/results/ndpi-dp-utility-$stamp.png
runs="$WORK/dp-runs.jsonl"
task=category_class
# SUMMARY_ONLY=1 redraws the table and chart from the runs already recorded.
[ -n "${SUMMARY_ONLY:-}" ] && SEEDS=""
[ -n "${SUMMARY_ONLY:-}" ] || : >"$runs"
for seed in $SEEDS; do
  dp="$WORK/$task-dp-s$seed"
  [ -f "$dp/manifest.json" ] || $bin prepare "$ndpi/pcap" --labels "$ndpi/proposed_flows.csv" --label-column "$task" \
    --repr deeppacket --max-per-flow "$MAX_PER_FLOW" --split-by flow --seed "$seed" --out "$dp" --json >/dev/null
  for eps in $EPSILONS; do
    m="$WORK/$task-sae-dp-eps$eps-s$seed.safetensors"
    echo "== ε = $eps, seed $seed"
    common=(--arch sae --pretrain-epochs 0 --epochs "$EPOCHS" --patience 0 --optimizer "$OPTIMIZER" --lr "$LR" --batch-size "$BATCH" --seed "$seed")
    if [ "$eps" = inf ]; then
      $bin train "$dp" --out "$m" "${common[@]}" --json >"$m.train.json"
    else
      $bin train "$dp" --out "$m" "${common[@]}" --dp --epsilon "$eps" --delta 1e-5 --privacy-unit flow \
        --unit-cap "$UNIT_CAP" --clip "$CLIP" --json >"$m.train.json"
    fi
    $bin eval "$m" "$dp" --json >"$m.eval.json"
    python3 - "$eps" "$seed" "$m" >>"$runs" <<'PY'
import json, sys
eps, seed, m = sys.argv[1:4]
ev = json.load(open(m + ".eval.json"))
tr = json.load(open(m + ".train.json"))
p = tr.get("privacy") or {}
print(json.dumps({"epsilon_target": eps, "seed": int(seed), "macro_f1": ev["report"]["macro_f1"],
                  "flow_macro_f1": (ev["report"].get("flow_level") or {}).get("macro_f1"),
                  "baseline_macro_f1": ev["baseline"]["macro_f1"], "epsilon_spent": p.get("epsilon"),
                  "sigma": p.get("sigma"), "q": p.get("q"), "steps": p.get("steps"), "seconds": tr["seconds"]}))
PY
    tail -n 1 "$runs"
  done
done

python3 - "$runs" "$out" "$WORK/dp-utility-chart.json" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def ms(v):
    v = [x for x in v if x is not None]
    return (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) if v else (None, None)
rows = []
for eps in dict.fromkeys(r["epsilon_target"] for r in runs):
    rs = [r for r in runs if r["epsilon_target"] == eps]
    f1, f1s = ms([r["macro_f1"] for r in rs])
    fl, fls = ms([r["flow_macro_f1"] for r in rs])
    sp, _ = ms([r["epsilon_spent"] for r in rs])
    sg, _ = ms([r["sigma"] for r in rs])
    rows.append({"epsilon": eps, "seeds": len(rs), "macro_f1": f1, "macro_f1_std": f1s, "flow_macro_f1": fl,
                 "flow_macro_f1_std": fls, "epsilon_spent": sp, "sigma": sg,
                 "baseline": ms([r["baseline_macro_f1"] for r in rs])[0]})
print("| ε (flow-level, δ = 1e-5) | σ | seeds | macro-F1 (samples) | macro-F1 (flows) |")
print("|---|---|---|---|---|")
for r in rows:
    sig = f"{r['sigma']:.3f}" if r["sigma"] else "-"
    e = "∞ (no DP)" if r["epsilon"] == "inf" else r["epsilon"]
    print(f"| {e} | {sig} | {r['seeds']} | {r['macro_f1']:.3f} ± {r['macro_f1_std']:.3f} | "
          f"{r['flow_macro_f1']:.3f} ± {r['flow_macro_f1_std']:.3f} |")
print(f"header-only baseline (same splits): macro-F1 {rows[0]['baseline']:.3f}")
json.dump({"runs": runs, "table": rows}, open(sys.argv[2], "w"), indent=1)

# The chart: privpkt draws it (`privpkt plot`), mean ± std over seeds against ε.
spec = {"title": f"Flow-level DP-SGD, nDPI categories (δ = 1e-5, {rows[0]['seeds']} seeds)",
        "x_label": "privacy budget ε per flow", "y_label": "test macro-F1",
        "x": [("∞" if r["epsilon"] == "inf" else r["epsilon"]) for r in rows],
        "series": [{"name": "packets", "mean": [r["macro_f1"] for r in rows], "std": [r["macro_f1_std"] for r in rows]},
                   {"name": "flows (majority vote)", "mean": [r["flow_macro_f1"] for r in rows],
                    "std": [r["flow_macro_f1_std"] for r in rows]}],
        "reference": {"y": rows[0]["baseline"], "label": "header-only baseline"}}
json.dump(spec, open(sys.argv[3], "w"), indent=1)
print("written", sys.argv[2])
PY
$bin plot "$WORK/dp-utility-chart.json" --out "$png"
