#!/usr/bin/env bash
# Round time of Flower's SecAgg+ beside plain FedAvg, with privpkt's Rust nodes: three nodes on
# this machine (loopback), each with its own synthetic organisation, for the stacked autoencoder
# (Deep Packet vectors, ≈ 0.8 M parameters) and the packet-series network (flow behaviour,
# ≈ 0.2 M). Each model runs ROUNDS rounds without and with SecAgg+ (3 shares, threshold 2), in
# the same SuperLink set-up (flower/local.sh); printed: seconds per round, and each node's own
# time per SecAgg+ stage (keys, shares, training + masking, unmasking).
#
#   bash bench/flower_secagg_bench.sh      # ~6 min; needs target/flwr-venv-1.40.0 (the e2e test makes it)
#
# Results: bench/results/flower-secagg-<date>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
VENV=${VENV:-target/flwr-venv-1.40.0}
cargo build --release -q
work=bench/work/flower-secagg
mkdir -p "$work" bench/results
for i in 0 1 2; do
    [ -d "$work/synth-$i" ] || target/release/privpkt synth --out "$work/synth-$i" --seed $((300 + i)) \
        --captures-per-class 2 --flows-per-capture 40 --yes > /dev/null
    [ -d "$work/dp-$i" ] || target/release/privpkt prepare "$work/synth-$i" --out "$work/dp-$i" --repr deeppacket \
        --max-per-flow 4 > /dev/null
    [ -d "$work/fb-$i" ] || target/release/privpkt prepare "$work/synth-$i" --out "$work/fb-$i" > /dev/null
done
out=bench/results/flower-secagg-$(date -u +%Y-%m-%dT%H%M%S).json
results=()
for model in sae series-cnn; do
    case $model in sae) prefix=dp ;; *) prefix=fb ;; esac
    for mode in plain secaggplus; do
        cfg="fraction-evaluate=0.0"
        [ $mode = secaggplus ] && cfg="$cfg secaggplus-shares=3 secaggplus-threshold=2"
        log="$work/$model-$mode.log"
        KEEP=1 ROUNDS=$ROUNDS VENV=$VENV RUN_CONFIG="$cfg" CLIENT_ARGS="--arch $model" \
            bash flower/local.sh "$work/$prefix-0" "$work/$prefix-1" "$work/$prefix-2" > "$log" 2>&1 ||
            { cat "$log"; exit 1; }
        results+=("$model $mode $log")
        grep "^run " "$log"
    done
done
RESULTS="$(printf '%s\n' "${results[@]}")" ROUNDS=$ROUNDS OUT="$out" python3 - <<'PY'
import glob, json, os, re
rounds = int(os.environ["ROUNDS"])
rows = {}
for line in os.environ["RESULTS"].splitlines():
    model, mode, log = line.split()
    text = open(log).read()
    secs = float(re.search(r"after ([0-9.]+) s", text).group(1))
    kept = re.search(r"work directory kept: (\S+)", text).group(1)
    stages = {}
    for path in glob.glob(f"{kept}/node-*.jsonl"):
        for l in open(path):
            r = json.loads(l)
            key = r.get("secagg_stage") or r["type"]
            stages.setdefault(key, []).append(r["ms"]["work"])
    rows[(model, mode)] = {"seconds": secs, "seconds_per_round": secs / rounds,
                           "node_ms_per_stage": {k: sum(v) / len(v) for k, v in stages.items()}}
nan = float("nan")
print(f"{rounds} rounds, 3 nodes, one machine")
print(f"{'model':<11} {'plain s/round':>14} {'SecAgg+ s/round':>16} {'ratio':>6}   node ms: SecAgg+ setup / share_keys / "
      "collect (training + masking) / unmask; plain train")
out = {}
for model in ("sae", "series-cnn"):
    p, s = rows[(model, "plain")], rows[(model, "secaggplus")]
    st, ratio = s["node_ms_per_stage"], s["seconds_per_round"] / p["seconds_per_round"]
    stage_ms = " / ".join(f"{st.get(k, nan):.0f}" for k in ("setup", "share_keys", "collect_masked_vectors", "unmask"))
    print(f"{model:<11} {p['seconds_per_round']:>14.1f} {s['seconds_per_round']:>16.1f} {ratio:>6.2f}   "
          f"{stage_ms}; {p['node_ms_per_stage'].get('train', nan):.0f}")
    out[model] = {"plain": p, "secaggplus": s, "round_time_ratio": ratio}
json.dump({"rounds": rounds, "nodes": 3, "models": out}, open(os.environ["OUT"], "w"), indent=1)
print("written:", os.environ["OUT"])
PY
