#!/usr/bin/env bash
# Real-data model table: the nDPI corpus's two proposed label sets (category_class, app_class),
# split by flow, 3 seeds (the split and the training both change with the seed). Trains the Deep
# Packet CNN, the stacked autoencoder and the mini-FlowPic CNN, evaluates each on its test split
# beside the header-only baseline, and prints macro-F1 mean ± std (sample and flow level).
#
#   bash bench/ndpi_models.sh                      # all tasks, models and seeds (~40 min on 2 cores)
#   SEEDS="1" TASKS=app_class bash bench/ndpi_models.sh
#
# Environment: SEEDS (1 2 3), TASKS (category_class app_class), MODELS (cnn sae flowpic),
# MAX_PER_FLOW (16), CNN_EPOCHS (8), SAE_EPOCHS (20), FP_EPOCHS (30), WORK (bench/work/ndpi-models),
# PRIVPKT_BIN (a prebuilt binary to use instead of building one), APPEND (keep earlier runs).
# Settings are the papers' and the demo's defaults; nothing is tuned on test. mini-FlowPic uses the demo's batch
# 16 and learning rate 3e-3: a first run with batch 64 and 1e-3 still under-fitted its training split after 30 epochs.
# Results: bench/results/ndpi-models-<date>.json and a markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ndpi=../shared/data/ndpi
[ -d "$ndpi/pcap" ] || { echo "SKIPPED: $ndpi not found (the nDPI corpus ships beside the repository)"; exit 0; }
SEEDS=${SEEDS:-"1 2 3"}
TASKS=${TASKS:-"category_class app_class"}
MODELS=${MODELS:-"cnn sae flowpic"}
MAX_PER_FLOW=${MAX_PER_FLOW:-16}
CNN_EPOCHS=${CNN_EPOCHS:-8}
SAE_EPOCHS=${SAE_EPOCHS:-20}
FP_EPOCHS=${FP_EPOCHS:-30}
WORK=${WORK:-bench/work/ndpi-models}
bin=${PRIVPKT_BIN:-target/release/privpkt}
[ -n "${PRIVPKT_BIN:-}" ] || cargo build --release -q -p privpkt
mkdir -p "$WORK" bench/results
out=bench/results/ndpi-models-$(date -u +%Y-%m-%dT%H%M%S).json
runs="$WORK/runs.jsonl"
# APPEND=1 keeps earlier runs (e.g. to add a model); a run of the same task, model and seed replaces them.
[ -n "${APPEND:-}" ] || : >"$runs"

record() { # task model seed eval.json seconds
  python3 - "$@" >>"$runs" <<'PY'
import json, sys
task, model, seed, path, secs = sys.argv[1:6]
ev = json.load(open(path))
def pick(r):
    fl = r.get("flow_level") or {}
    return {"macro_f1": r["macro_f1"], "accuracy": r["accuracy"], "balanced_accuracy": r["balanced_accuracy"],
            "flow_macro_f1": fl.get("macro_f1"), "n": r["n"]}
print(json.dumps({"task": task, "model": model, "seed": int(seed), "train_seconds": float(secs),
                  "model_metrics": pick(ev["report"]), "baseline": pick(ev["baseline"])}))
PY
}

for task in $TASKS; do
  for seed in $SEEDS; do
    dp="$WORK/$task-dp-s$seed"
    fp="$WORK/$task-fp-s$seed"
    [ -f "$dp/manifest.json" ] || $bin prepare "$ndpi/pcap" --labels "$ndpi/proposed_flows.csv" --label-column "$task" \
      --repr deeppacket --max-per-flow "$MAX_PER_FLOW" --split-by flow --seed "$seed" --out "$dp" --json >/dev/null
    [ -f "$fp/manifest.json" ] || $bin prepare "$ndpi/pcap" --labels "$ndpi/proposed_flows.csv" --label-column "$task" \
      --repr flowpic --mini --split-by flow --seed "$seed" --out "$fp" --json >/dev/null
    for model in $MODELS; do
      case $model in
        cnn) ds=$dp; args=(--arch deeppacket-app --epochs "$CNN_EPOCHS" --patience 3) ;;
        sae) ds=$dp; args=(--arch sae --epochs "$SAE_EPOCHS" --patience 5 --pretrain-epochs 3) ;;
        flowpic) ds=$fp; args=(--arch flowpic-mini --epochs "$FP_EPOCHS" --patience 8 --batch-size 16 --lr 0.003) ;;
        *) echo "unknown model $model"; exit 2 ;;
      esac
      m="$WORK/$task-$model-s$seed.safetensors"
      echo "== $task $model seed $seed"
      start=$(date +%s.%N)
      $bin train "$ds" --out "$m" "${args[@]}" --seed "$seed" --json >"$m.train.json"
      secs=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)")
      $bin eval "$m" "$ds" --json >"$m.eval.json"
      record "$task" "$model" "$seed" "$m.eval.json" "$secs"
      tail -n 1 "$runs"
    done
  done
done

python3 - "$runs" "$out" <<'PY'
import json, statistics, sys
runs = list({(r['task'], r['model'], r['seed']): r for r in (json.loads(l) for l in open(sys.argv[1]) if l.strip())}.values())
def ms(v):
    v = [x for x in v if x is not None]
    if not v: return "-"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.3f} ± {sd:.3f}"
names = {"cnn": "Deep Packet CNN (app variant)", "sae": "Deep Packet SAE", "flowpic": "mini-FlowPic CNN"}
rows = []
for task in dict.fromkeys(r["task"] for r in runs):
    for model in dict.fromkeys(r["model"] for r in runs if r["task"] == task):
        rs = [r for r in runs if r["task"] == task and r["model"] == model]
        rows.append((task, names[model], len(rs), ms([r["model_metrics"]["macro_f1"] for r in rs]),
                     ms([r["model_metrics"]["flow_macro_f1"] for r in rs])))
        rows.append((task, "header baseline on " + ("FlowPic" if model == "flowpic" else "packet") + " samples",
                     len(rs), ms([r["baseline"]["macro_f1"] for r in rs]), ms([r["baseline"]["flow_macro_f1"] for r in rs])))
seen, table = set(), []
for r in rows:
    if (r[0], r[1]) not in seen:
        seen.add((r[0], r[1])); table.append(r)
print("| task | model | seeds | macro-F1 (samples) | macro-F1 (flows, majority vote) |")
print("|---|---|---|---|---|")
for r in table:
    print("| " + " | ".join(str(x) for x in r) + " |")
json.dump({"runs": runs, "table": table}, open(sys.argv[2], "w"), indent=1)
print("written", sys.argv[2])
PY
