#!/usr/bin/env bash
# Federated learning on real traffic: the nDPI corpus's category_class task, split by flow, at
# most 16 packets per flow, 3 seeds (split, partition and training change with the seed).
# Centralised training against FedAvg over 3 and 10 organisations with IID, Dirichlet(0.5),
# Dirichlet(0.1) and by-capture partitions, and FedAvg with flow-level DP-SGD inside every
# organisation (ε = 8 each, δ = 1e-5). The model is Deep Packet's stacked autoencoder without
# pre-training, SGD lr 0.1 momentum 0.9, batch 64 (the setting `ndpi_dp_utility.sh` chose on the
# validation split); ROUNDS rounds of one local epoch equal ROUNDS centralised epochs of work.
# Prints test macro-F1 (samples and flows) mean ± std, and the mean round time of each setting.
#
#   bash bench/ndpi_federated.sh          # ~15 min on 2 cores
#
# Environment: SEEDS (1 2 3), CLIENTS (3 10), PARTITIONS (iid dirichlet:0.5 dirichlet:0.1
# by-capture), ROUNDS (30), CNN_ROUND (1: also time one 10-client round of the Deep Packet CNN), DP_EPSILON (8), MAX_PER_FLOW (16), WORK (bench/work/ndpi-fed),
# PRIVPKT_BIN (a prebuilt binary), SUMMARY_ONLY (reprint from recorded runs).
set -euo pipefail
cd "$(dirname "$0")/.."
ndpi=../shared/data/ndpi
[ -d "$ndpi/pcap" ] || { echo "SKIPPED: $ndpi not found (the nDPI corpus ships beside the repository)"; exit 0; }
SEEDS=${SEEDS:-"1 2 3"}
CLIENTS=${CLIENTS:-"3 10"}
PARTITIONS=${PARTITIONS:-"iid dirichlet:0.5 dirichlet:0.1 by-capture"}
ROUNDS=${ROUNDS:-30}
DP_EPSILON=${DP_EPSILON:-8}
MAX_PER_FLOW=${MAX_PER_FLOW:-16}
WORK=${WORK:-bench/work/ndpi-fed}
bin=${PRIVPKT_BIN:-target/release/privpkt}
[ -n "${PRIVPKT_BIN:-}" ] || cargo build --release -q -p privpkt
mkdir -p "$WORK" bench/results
stamp=$(date -u +%Y-%m-%dT%H%M%S)
out=bench/results/ndpi-federated-$stamp.json
runs="$WORK/fed-runs.jsonl"
task=category_class
common=(--arch sae --optimizer sgd --lr 0.1 --batch-size 64)
[ -n "${SUMMARY_ONLY:-}" ] && SEEDS=""
[ -n "${SUMMARY_ONLY:-}" ] || : >"$runs"

# One JSON line per run: setting, seed, test macro-F1 on samples and flows, round times.
record() {
  python3 - "$@" >>"$runs" <<'PY'
import json, sys
setting, clients, partition, seed, m, log = sys.argv[1:7]
ev = json.load(open(m + ".eval.json"))
run = json.load(open(log))
rounds = run.get("rounds") or []
secs = [r["seconds"] for r in rounds]
p = run.get("privacy") or {}
print(json.dumps({"setting": setting, "clients": int(clients), "partition": partition, "seed": int(seed),
                  "macro_f1": ev["report"]["macro_f1"],
                  "flow_macro_f1": (ev["report"].get("flow_level") or {}).get("macro_f1"),
                  "baseline_macro_f1": ev["baseline"]["macro_f1"],
                  "round_seconds": sum(secs) / len(secs) if secs else None,
                  "seconds": run.get("seconds", sum(secs)), "epsilon": p.get("epsilon")}))
PY
  tail -n 1 "$runs"
}

for seed in $SEEDS; do
  ds="$WORK/$task-s$seed"
  [ -f "$ds/manifest.json" ] || $bin prepare "$ndpi/pcap" --labels "$ndpi/proposed_flows.csv" --label-column "$task" \
    --repr deeppacket --max-per-flow "$MAX_PER_FLOW" --split-by flow --seed "$seed" --out "$ds" --json >/dev/null
  m="$WORK/central-s$seed.safetensors"
  echo "== centralised, seed $seed"
  $bin train "$ds" --out "$m" "${common[@]}" --pretrain-epochs 0 --epochs "$ROUNDS" --patience 0 --seed "$seed" \
    --json >"$m.run.json"
  $bin eval "$m" "$ds" --json >"$m.eval.json"
  record centralised 1 - "$seed" "$m" "$m.run.json"
  for n in $CLIENTS; do
    for part in $PARTITIONS; do
      m="$WORK/fedavg-$n-${part/:/}-s$seed.safetensors"
      echo "== FedAvg, $n clients, $part, seed $seed"
      $bin federate "$ds" --out "$m" "${common[@]}" --clients "$n" --partition "$part" --rounds "$ROUNDS" \
        --seed "$seed" --json >"$m.run.json"
      $bin eval "$m" "$ds" --json >"$m.eval.json"
      record fedavg "$n" "$part" "$seed" "$m" "$m.run.json"
    done
    m="$WORK/fedavg-dp-$n-s$seed.safetensors"
    echo "== FedAvg + local DP-SGD (ε = $DP_EPSILON per organisation), $n clients, iid, seed $seed"
    $bin federate "$ds" --out "$m" "${common[@]}" --clients "$n" --partition iid --rounds "$ROUNDS" --seed "$seed" \
      --dp --epsilon "$DP_EPSILON" --delta 1e-5 --privacy-unit flow --unit-cap 8 --clip 1 --json >"$m.run.json"
    $bin eval "$m" "$ds" --json >"$m.eval.json"
    record "fedavg+dp(eps=$DP_EPSILON)" "$n" iid "$seed" "$m" "$m.run.json"
  done
done

# The Deep Packet CNN is ~50x slower to train than the SAE: one round of 10 clients, timed.
cnn_round=null
if [ "${CNN_ROUND:-1}" = 1 ] && [ -z "${SUMMARY_ONLY:-}" ]; then
  seed=$(echo $SEEDS | cut -d' ' -f1)
  m="$WORK/fedavg-cnn-10-s$seed.safetensors"
  echo "== timing: one round of 10 clients, Deep Packet CNN, seed $seed"
  $bin federate "$WORK/$task-s$seed" --out "$m" --arch deeppacket-traffic --clients 10 --rounds 1 --seed "$seed" \
    --json >"$m.run.json"
  cnn_round=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rounds"][0]["seconds"])' "$m.run.json")
  echo "one 10-client round of the CNN: $cnn_round s"
fi

python3 - "$runs" "$out" "$cnn_round" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def ms(v):
    v = [x for x in v if x is not None]
    return (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) if v else (float("nan"), 0.0)
rows = []
for key in dict.fromkeys((r["setting"], r["clients"], r["partition"]) for r in runs):
    rs = [r for r in runs if (r["setting"], r["clients"], r["partition"]) == key]
    f, fs = ms([r["macro_f1"] for r in rs])
    g, gs = ms([r["flow_macro_f1"] for r in rs])
    rt, _ = ms([r["round_seconds"] for r in rs])
    eps, _ = ms([r["epsilon"] for r in rs])
    rows.append({"setting": key[0], "clients": key[1], "partition": key[2], "seeds": len(rs), "macro_f1": f,
                 "macro_f1_std": fs, "flow_macro_f1": g, "flow_macro_f1_std": gs, "round_seconds": rt,
                 "epsilon": eps})
print("| setting | clients | partition | seeds | macro-F1 (samples) | macro-F1 (flows) | s / round |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    rt = f"{r['round_seconds']:.1f}" if r["round_seconds"] == r["round_seconds"] else "-"
    print(f"| {r['setting']} | {r['clients']} | {r['partition']} | {r['seeds']} | {r['macro_f1']:.3f} ± "
          f"{r['macro_f1_std']:.3f} | {r['flow_macro_f1']:.3f} ± {r['flow_macro_f1_std']:.3f} | {rt} |")
print(f"header-only baseline (same splits): macro-F1 {ms([r['baseline_macro_f1'] for r in runs])[0]:.3f}")
cnn = None if sys.argv[3] == "null" else float(sys.argv[3])
if cnn is not None:
    print(f"one 10-client FedAvg round of the Deep Packet CNN (local epoch + test evaluation): {cnn:.1f} s")
json.dump({"runs": runs, "table": rows, "cnn_10_client_round_seconds": cnn}, open(sys.argv[2], "w"), indent=1)
print("written", sys.argv[2])
PY
