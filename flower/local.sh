#!/usr/bin/env bash
# A whole Flower federation on this machine (loopback): a flower-superlink, one
# `privpkt flower-client` per dataset directory, this app run with FedAvg; then the run's
# status and, per round, each node's local training time beside Flower's overhead
# (pull + decode + convert + encode + push), from the nodes' --json lines.
#
#   flower/local.sh DS_A DS_B DS_C
#
# Environment: VENV (a venv with flwr 1.40.0; default target/flwr-venv-1.40.0, which the
# end-to-end test creates), PRIVPKT (default target/release/privpkt), PORT (18200), ROUNDS (3),
# RUN_CONFIG (extra run config, e.g. 'local-epochs=2'), CLIENT_ARGS (extra node flags, e.g.
# '--batch-size 32'), KEEP=1 keeps the work directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 DATASET_DIR..." >&2; exit 2; }
VENV="${VENV:-$root/target/flwr-venv-1.40.0}"
PRIVPKT="${PRIVPKT:-$root/target/release/privpkt}"
PORT="${PORT:-18200}"
ROUNDS="${ROUNDS:-3}"
[ -x "$VENV/bin/flower-superlink" ] || { echo "no flower-superlink in $VENV (python3 -m venv \$VENV && \$VENV/bin/pip install flwr==1.40.0)" >&2; exit 1; }
[ -x "$PRIVPKT" ] || { echo "no privpkt binary at $PRIVPKT (cargo build --release)" >&2; exit 1; }

work="$(mktemp -d)"
link=""
nodes=()
stop() { # signal, then wait up to 5 s, then SIGKILL: PIDs (or -PGID) this script started
    for p in "$@"; do kill -INT -- "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
        alive=0
        for p in "$@"; do kill -0 -- "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && return
        sleep 0.1
    done
    for p in "$@"; do kill -KILL -- "$p" 2>/dev/null || true; done
}
cleanup() {
    # Nodes first (they sign off from the SuperLink), then the SuperLink's process group.
    [ ${#nodes[@]} -gt 0 ] && stop "${nodes[@]}"
    [ -n "$link" ] && stop "-$link"
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

export PATH="$VENV/bin:$PATH" FLWR_HOME="$work/home" FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
mkdir -p "$FLWR_HOME"
printf '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:%s"\ninsecure = true\n' "$PORT" \
    > "$FLWR_HOME/config.toml"

# The node arguments shape the model (--arch, --repr...): export with the same ones.
# shellcheck disable=SC2086
"$PRIVPKT" flower-client --data "$1" ${CLIENT_ARGS:-} --export-initial "$work/init"
# Its own process group, so its SuperExec and ServerApp children stop with it.
setsid flower-superlink --insecure --host 127.0.0.1 --port "$PORT" --disable-runtime-dependency-installation \
    > "$work/superlink.log" 2>&1 &
link=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.2; done

i=0
for ds in "$@"; do
    # shellcheck disable=SC2086
    "$PRIVPKT" flower-client --data "$ds" --superlink "127.0.0.1:$PORT" --insecure --poll-interval 0.3 --json \
        --save-global "$work/global-$i.safetensors" ${CLIENT_ARGS:-} > "$work/node-$i.jsonl" 2> "$work/node-$i.log" &
    nodes+=("$!")
    i=$((i + 1))
done
for n in $(seq 0 $((i - 1))); do
    until grep -q joined "$work/node-$n.log" 2>/dev/null; do sleep 0.2; done
done

start=$(date +%s.%N)
run_id=$(flwr run "$root/flower" local --format json \
    --run-config "initial-arrays=\"$work/init\" num-server-rounds=$ROUNDS min-nodes=$# ${RUN_CONFIG:-}" |
    "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["run-id"])')
while :; do
    status=$(flwr ls local --run-id "$run_id" --format json |
        "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["runs"][0]["status"])')
    case "$status" in finished:*) break ;; esac
    sleep 1
done
end=$(date +%s.%N)
echo "run $run_id: $status after $(awk "BEGIN { printf \"%.1f\", $end - $start }") s ($# nodes, $ROUNDS rounds)"

errors=0
"$VENV/bin/python" - "$work"/node-*.jsonl <<'EOF' || errors=1
import json, sys
failed = 0
print(f"{'node':>4} {'round':>5} {'type':>30} {'work ms':>9} {'flower ms':>9}  pull decode convert encode push (ms)   MB in  MB out")
for n, path in enumerate(sys.argv[1:]):
    for line in open(path):
        r = json.loads(line)
        ms = r["ms"]
        kind = r["type"] + (f" ({r['secagg_stage']})" if r.get("secagg_stage") else "")
        print(f"{n:>4} {r['round'] or '-':>5} {kind:>30} {ms['compute']:>9.0f} {ms['overhead']:>9.0f}  "
              f"{ms['pull']:.0f} {ms['decode']:.0f} {ms['convert']:.0f} {ms['encode']:.0f} {ms['push']:.0f}"
              f"   {r['bytes_in'] / 1e6:6.1f} {r['bytes_out'] / 1e6:6.1f}"
              + (f"  ERROR {r['error']}" if r["error"] else ""))
        failed += bool(r["error"])
if failed:
    print(f"{failed} error replies: see the ERROR lines", file=sys.stderr)
sys.exit(1 if failed else 0)
EOF
if [ "$status" != finished:completed ]; then
    echo "the run did not complete ($status); the ServerApp's log: flwr log $run_id local --show" >&2
    exit 1
fi
exit "$errors"
