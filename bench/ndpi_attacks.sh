#!/usr/bin/env bash
# Membership inference and one-run privacy audits on real traffic: the nDPI corpus's category_class task,
# split by flow 50/10/40 (train/val/test; half the test flows are non-members, the other half the attacker's
# shadow data), stacked autoencoder targets without pre-training:
#   - no DP, Adam 1e-3 (`privpkt train`'s defaults),
#   - no DP, SGD 0.1 (the DP runs' settings),
#   - flow-level DP-SGD at ε ∈ {1, 4, 8}, δ = 1e-5 (ndpi_dp_utility.sh's settings).
# Every target faces the loss attack, Shokri (8 shadows), LiRA online and offline (16 shadows each); every DP
# setting is audited with canaries (and once with its noise switched off, which the audit must catch). Prints
# AUC and TPR at 1 % FPR per attack, the audit bounds beside ε, LiRA's wall time, and writes
# bench/results/ndpi-attacks-<date>.json and .png (AUC against ε, `privpkt plot`).
#
#   bash bench/ndpi_attacks.sh          # ~25 min on 2 cores (shadow models dominate)
#
# Environment: SEED (1: split, targets, attacks), EPSILONS (1 4 8), TARGETS (adam sgd + one per ε), ATTACKS (loss
# shokri lira lira-offline), SHADOWS (16), SHOKRI_SHADOWS (8), CANARIES (1000), EPOCHS (20), MAX_PER_FLOW (16),
# WORK (bench/work/ndpi-attacks; shadow models there are reused by a rerun), PRIVPKT_BIN (a prebuilt binary),
# SUMMARY_ONLY (redo the table from recorded runs).
set -euo pipefail
cd "$(dirname "$0")/.."
ndpi=../shared/data/ndpi
[ -d "$ndpi/pcap" ] || { echo "SKIPPED: $ndpi not found (the nDPI corpus ships beside the repository)"; exit 0; }
SEED=${SEED:-1}
EPSILONS=${EPSILONS:-"1 4 8"}
ATTACKS=${ATTACKS:-"loss shokri lira lira-offline"}
SHADOWS=${SHADOWS:-16}
SHOKRI_SHADOWS=${SHOKRI_SHADOWS:-8}
CANARIES=${CANARIES:-1000}
EPOCHS=${EPOCHS:-20}
MAX_PER_FLOW=${MAX_PER_FLOW:-16}
WORK=${WORK:-bench/work/ndpi-attacks}
bin=${PRIVPKT_BIN:-target/release/privpkt}
[ -n "${PRIVPKT_BIN:-}" ] || cargo build --release -q -p privpkt
TARGETS=${TARGETS:-"adam sgd $(for e in $EPSILONS; do printf 'eps%s ' "$e"; done)"}
mkdir -p "$WORK" bench/results
stamp=$(date -u +%Y-%m-%dT%H%M%S)
out=bench/results/ndpi-attacks-$stamp.json
png=bench/results/ndpi-attacks-$stamp.png
runs="$WORK/runs.jsonl"
[ -n "${SUMMARY_ONLY:-}" ] && TARGETS=""
[ -n "${SUMMARY_ONLY:-}" ] || : >"$runs"

ds="$WORK/category_class-s$SEED"
[ -n "${SUMMARY_ONLY:-}" ] || [ -f "$ds/manifest.json" ] || $bin prepare "$ndpi/pcap" --labels "$ndpi/proposed_flows.csv" \
  --label-column category_class --repr deeppacket --max-per-flow "$MAX_PER_FLOW" --split-by flow --split 0.5,0.1,0.4 --seed "$SEED" \
  --out "$ds" --json >/dev/null
sae=(--arch sae --pretrain-epochs 0 --epochs "$EPOCHS" --patience 0 --batch-size 64 --seed "$SEED")
dpsgd=(--optimizer sgd --lr 0.1)

for t in $TARGETS; do
  m="$WORK/target-$t.safetensors"
  case $t in
    adam) args=() ;;
    sgd) args=("${dpsgd[@]}") ;;
    eps*) args=("${dpsgd[@]}" --dp --epsilon "${t#eps}" --delta 1e-5 --privacy-unit flow --unit-cap 8 --clip 1) ;;
    *) echo "unknown target $t"; exit 2 ;;
  esac
  [ -f "$m" ] || { echo "== train $t"; $bin train "$ds" --out "$m" "${sae[@]}" "${args[@]}" --json >"$m.train.json"; }
  $bin eval "$m" "$ds" --json >"$m.eval.json"
  for a in $ATTACKS; do
    case $a in
      loss) flags=(--attack loss) ;;
      shokri) flags=(--attack shokri --shadows "$SHOKRI_SHADOWS") ;;
      lira) flags=(--attack lira --shadows "$SHADOWS") ;;
      lira-offline) flags=(--attack lira --offline --shadows "$SHADOWS") ;;
      *) echo "unknown attack $a"; exit 2 ;;
    esac
    r="$WORK/attack-$t-$a"
    echo "== $a on $t"
    $bin attack --model "$m" --data "$ds" "${flags[@]}" --seed "$SEED" --work "$r.shadows" --json "$r.json" \
      --roc "$r.png" >"$r.log"
    sed -n 2p "$r.log"
    python3 - "$t" "$a" "$r.json" "$m.eval.json" >>"$runs" <<'PY'
import json, sys
t, a, path, ev = sys.argv[1:5]
r, e = json.load(open(path)), json.load(open(ev))
m = r["metrics"]
print(json.dumps({"kind": "attack", "target": t, "attack": a, "epsilon": r["target"]["epsilon"],
                  "test_macro_f1": e["report"]["macro_f1"], "auc": m["auc"], "advantage": m["advantage"],
                  "tpr_at_1pct_fpr": m["tpr_at_1pct_fpr"], "tpr_at_0_1pct_fpr": m["tpr_at_0_1pct_fpr"],
                  "balanced_accuracy": m["best_balanced_accuracy"], "members": r["members"],
                  "shadows": r["shadows"], "shadows_trained": r["shadow_training"]["trained"],
                  "shadow_seconds": r["shadow_training"]["seconds"], "seconds": r["seconds"], "seed": r["seed"]}))
PY
  done
  case $t in
    eps*)
      eps=${t#eps}
      breaks=("")
      [ "$eps" = "$(echo $EPSILONS | cut -d' ' -f1)" ] && breaks+=(noise)
      for b in "${breaks[@]}"; do
        j="$WORK/audit-$t${b:+-break-$b}.json"
        echo "== audit ε = $eps${b:+ with its $b switched off}"
        # The audited run trains like the target (the audit never stops early nor pre-trains).
        $bin audit --data "$ds" --arch sae --epochs "$EPOCHS" --batch-size 64 "${dpsgd[@]}" --epsilon "$eps" \
          --delta 1e-5 --unit-cap 8 --clip 1 \
          --canaries "$CANARIES" --seed "$SEED" ${b:+--break "$b"} --json "$j" >"${j%.json}.log"
        head -n 1 "${j%.json}.log"
        python3 - "$t" "$j" >>"$runs" <<'PY'
import json, sys
t, path = sys.argv[1:3]
a = json.load(open(path))
print(json.dumps({"kind": "audit", "target": t, "epsilon": a["accountant_epsilon"], "bound": a["epsilon_lower_bound"],
                  "broken": a["broken"], "canaries": a["canaries"], "correct": a["bound"]["correct"],
                  "guesses": a["bound"]["guesses"], "seconds": a["seconds"], "seed": a["seed"]}))
PY
      done ;;
  esac
done

python3 - "$runs" "$out" "$WORK/attacks-chart.json" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
att = [r for r in runs if r["kind"] == "attack"]
aud = [r for r in runs if r["kind"] == "audit"]
name = {"adam": "no DP (Adam)", "sgd": "no DP (SGD 0.1)"}
label = lambda t: name.get(t, "ε = " + t[3:])
targets = list(dict.fromkeys(r["target"] for r in att))
attacks = list(dict.fromkeys(r["attack"] for r in att))
print("| target | test macro-F1 | " + " | ".join(f"{a} AUC / TPR@1%FPR" for a in attacks) + " |")
print("|---|---|" + "---|" * len(attacks))
for t in targets:
    rs = {r["attack"]: r for r in att if r["target"] == t}
    f1 = next(iter(rs.values()))["test_macro_f1"]
    cells = [f"{rs[a]['auc']:.3f} / {rs[a]['tpr_at_1pct_fpr']:.3f}" if a in rs else "-" for a in attacks]
    print(f"| {label(t)} | {f1:.3f} | " + " | ".join(cells) + " |")
sizes = ", ".join(f"{a} {n}" for a, n in dict((r["attack"], r["members"]) for r in att).items())
print(f"members = non-members (flows): {sizes}; a random guess has TPR@1%FPR 0.010")
for r in att:
    if r["attack"] == "lira":
        fresh = "" if r["shadows_trained"] == r["shadows"] else f" ({r['shadows'] - r['shadows_trained']} reused)"
        print(f"LiRA online on {label(r['target'])}: {r['shadows']} shadows{fresh}, {r['seconds']:.0f} s wall time")
if aud:
    print("| audit | accountant ε | empirical ε ≥ (95 %) | correct / guesses |")
    print("|---|---|---|---|")
    for r in aud:
        what = label(r["target"]) + (f", {r['broken']} OFF" if r["broken"] else "")
        print(f"| {what} | {r['epsilon']:.3f} | {r['bound']:.3f} | {r['correct']} / {r['guesses']} |")
    bad = [r for r in aud if not r["broken"] and r["bound"] > r["epsilon"]]
    caught = [r for r in aud if r["broken"] and r["bound"] > r["epsilon"]]
    print("every honest audit bound below its ε:", "yes" if not bad else f"NO ({len(bad)})")
    if any(r["broken"] for r in aud):
        print("broken DP caught by the audit:", "yes" if caught else "NO")
json.dump({"runs": runs}, open(sys.argv[2], "w"), indent=1)
spec = {"title": "Membership inference on nDPI categories (flow level)", "x_label": "target",
        "y_label": "attack ROC AUC", "x": [label(t) for t in targets], "y_range": [0.4, 1.0],
        "series": [{"name": a, "mean": [next((r["auc"] for r in att if r["target"] == t and r["attack"] == a), None)
                                        for t in targets]} for a in attacks],
        "reference": {"y": 0.5, "label": "chance"}}
json.dump(spec, open(sys.argv[3], "w"), indent=1)
print("written", sys.argv[2])
PY
$bin plot "$WORK/attacks-chart.json" --out "$png"
