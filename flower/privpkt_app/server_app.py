"""privpkt's ServerApp: Flower's own FedAvg over the weights of privpkt's Rust nodes.

The initial model comes from `privpkt flower-client --data DS --export-initial DIR`: one
`<i>.npy` per tensor in parameter order and `model.json` (names, shapes, fingerprint). The
fingerprint travels in every train/evaluate config as `privpkt-model`, so a node whose data
makes a different model (other classes, representation or architecture) refuses instead of
averaging mismatched weights.

Flower's own DP wrappers are run-config options (`dp`): client-side fixed or adaptive clipping
(privpkt's nodes clip their update to the `clipping_norm` in the train config, as Flower's
`fixedclipping_mod` / `adaptiveclipping_mod` do, and send `norm_bit`) or server-side fixed
clipping, each adding Gaussian noise of σ = noise-multiplier × clipping-norm / sampled nodes
to the average. That calibration holds for an *equal-weight* average, so with `dp` set the
nodes' updates are averaged with equal weights (their `unit-weight` metric), not by examples.

With `secaggplus-shares` > 0 the rounds run Flower's SecAgg+ (`SecAggPlusWorkflow` in a
`DefaultWorkflow`, Flower's legacy FedAvg): each node sends its weighted, quantised parameters
masked, and the server learns only their sum. privpkt's nodes answer the four stages as
`secaggplus_mod` does on a Python node. With `dp = "client-fixed"` the nodes clip their updates
and the server adds the noise to the securely aggregated sum (Flower's documented pairing).

A round in which every node replied with an error fails the run, instead of "completing" on
the initial weights; so does a SecAgg+ round that halts (too few nodes left for the threshold).
"""

import io
import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerConfig
from flwr.server import strategy as legacy_strategy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    Strategy,
)

DP_MODES = ("", "client-fixed", "client-adaptive", "server-fixed")

app = ServerApp()


def _directory(value: str, key: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ValueError(
            f"run config `{key}` must be an absolute path on the SuperLink's machine, got {value!r}"
        )
    return path


def load_initial(directory: Path) -> tuple[dict, ArrayRecord]:
    """The exported arrays in parameter order, checked against model.json."""
    desc = json.loads((directory / "model.json").read_text())
    arrays = []
    for t in desc["params"]:
        a = np.load(directory / t["file"], allow_pickle=False)
        if a.dtype != np.float32 or list(a.shape) != t["shape"]:
            raise ValueError(
                f"{directory / t['file']}: {a.dtype} {list(a.shape)}, model.json says float32 {t['shape']}"
            )
        arrays.append(a)
    return desc, ArrayRecord(arrays)


def save_final(directory: Path, desc: dict, arrays: ArrayRecord) -> None:
    """The final global arrays in the export format (readable by the same ServerApp)."""
    directory.mkdir(parents=True, exist_ok=True)
    for t, a in zip(desc["params"], arrays.to_numpy_ndarrays()):
        np.save(directory / t["file"], a.astype(np.float32), allow_pickle=False)
    (directory / "model.json").write_text(json.dumps(desc, indent=2) + "\n")


class ProbedFedAvg(FedAvg):
    """FedAvg that can append each train reply's update norm (‖new − sent‖₂, all arrays
    flattened, float64) and `norm_bit` to a JSON-lines file: what the aggregation receives."""

    def __init__(self, probe: Path | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.probe = probe
        self.sent: list[np.ndarray] | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.probe is not None:
            self.sent = [a.astype(np.float64) for a in arrays.to_numpy_ndarrays()]
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if self.probe is not None and self.sent is not None:
            with self.probe.open("a") as f:
                for msg in replies:
                    if msg.has_error():
                        continue
                    new = next(iter(msg.content.array_records.values())).to_numpy_ndarrays()
                    norm = math.sqrt(sum(float(np.sum((n.astype(np.float64) - s) ** 2)) for n, s in zip(new, self.sent)))
                    metrics = next(iter(msg.content.metric_records.values()))
                    bit = metrics["norm_bit"] if "norm_bit" in metrics else None
                    f.write(json.dumps({"round": server_round, "node": msg.metadata.src_node_id, "norm": norm, "norm_bit": bit}) + "\n")
        return super().aggregate_train(server_round, replies)


class FailWhenAllFail(Strategy):
    """Delegates to `strategy`, but a round whose replies are all errors stops the run with
    the nodes' reasons (Flower would go on with the old weights and call the run completed)."""

    def __init__(self, strategy: Strategy) -> None:
        super().__init__()
        self.strategy = strategy

    @staticmethod
    def _check(kind: str, server_round: int, replies: list[Message]) -> None:
        if replies and all(m.has_error() for m in replies):
            reasons = sorted({str(m.error.reason).strip().splitlines()[-1][:300] for m in replies})
            raise RuntimeError(
                f"round {server_round}: every node's {kind} reply was an error ({len(replies)} of {len(replies)}): "
                + " | ".join(reasons)
            )

    def configure_train(self, server_round, arrays, config, grid):
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        self._check("train", server_round, replies)
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round, arrays, config, grid):
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round, replies):
        replies = list(replies)
        self._check("evaluate", server_round, replies)
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.strategy.summary()


def dp_settings(cfg, min_nodes: int) -> tuple[str, float, float, int]:
    """Run config `dp` (checked) and its noise multiplier z, clipping norm C and sampled nodes m."""
    mode = str(cfg.get("dp", ""))
    if mode not in DP_MODES:
        raise ValueError(f"run config `dp` must be one of {', '.join(repr(m) for m in DP_MODES)}, got {mode!r}")
    z = float(cfg.get("dp-noise-multiplier", 1.0))
    c = float(cfg.get("dp-clipping-norm", 0.1))
    m = int(cfg.get("dp-sampled-nodes", 0)) or min_nodes
    return mode, z, c, m


def with_dp(strategy: FedAvg, cfg, min_nodes: int) -> Strategy:
    """Flower's DP wrapper named by run config `dp` around `strategy`."""
    mode, z, c, m = dp_settings(cfg, min_nodes)
    if not mode:
        return strategy
    if mode == "client-fixed":
        return DifferentialPrivacyClientSideFixedClipping(strategy, z, c, m)
    if mode == "server-fixed":
        return DifferentialPrivacyServerSideFixedClipping(strategy, z, c, m)
    stddev = float(cfg.get("dp-clipped-count-stddev", 0.0)) or None
    return DifferentialPrivacyClientSideAdaptiveClipping(
        strategy, z, m, initial_clipping_norm=c, clipped_count_stddev=stddev
    )


class Float32FedAvg(legacy_strategy.FedAvg):
    """Flower's legacy FedAvg, its aggregate narrowed to float32 (SecAgg+'s dequantisation
    yields float64: twice the bytes to every node, and not the model's type)."""

    def aggregate_fit(self, server_round, results, failures):
        params, metrics = super().aggregate_fit(server_round, results, failures)
        if params is not None:
            params = ndarrays_to_parameters([a.astype(np.float32) for a in parameters_to_ndarrays(params)])
        return params, metrics


class StrictSecAggPlus(SecAggPlusWorkflow):
    """SecAgg+ whose halted round fails the run (Flower logs it and goes on with the old
    weights)."""

    def __call__(self, grid: Grid, context: Context) -> None:
        state = WorkflowState()
        for step in (self.setup_stage, self.share_keys_stage, self.collect_masked_vectors_stage, self.unmask_stage):
            if not step(grid, context, state):
                reasons = sorted({str(f).strip().splitlines()[-1][:300] for f in state.failures})
                raise RuntimeError(
                    f"secure aggregation halted in {step.__name__} "
                    f"({len(state.active_node_ids)} nodes left): " + (" | ".join(reasons) or "too few nodes")
                )


def run_secaggplus(grid: Grid, context: Context, cfg, desc: dict, initial: ArrayRecord, train_config: ConfigRecord) -> ArrayRecord:
    """The rounds through Flower's SecAgg+ workflow (legacy FedAvg: weights by examples, as
    SecAgg+ multiplies them into the masked vector)."""
    min_nodes = int(cfg["min-nodes"])
    fit_config = dict(train_config)
    strategy = Float32FedAvg(
        fraction_fit=float(cfg["fraction-train"]),
        fraction_evaluate=float(cfg["fraction-evaluate"]),
        min_fit_clients=min_nodes,
        min_evaluate_clients=min_nodes,
        min_available_clients=min_nodes,
        initial_parameters=ndarrays_to_parameters(initial.to_numpy_ndarrays()),
        on_fit_config_fn=lambda r: {**fit_config, "server-round": r},
        on_evaluate_config_fn=lambda r: {"privpkt-model": desc["fingerprint"], "server-round": r},
    )
    mode, z, c, m = dp_settings(cfg, min_nodes)
    if mode == "client-fixed":
        strategy = legacy_strategy.DifferentialPrivacyClientSideFixedClipping(strategy, z, c, m)
    elif mode:
        raise ValueError(f"with SecAgg+, run config `dp` can be \"\" or \"client-fixed\", got {mode!r}")
    legacy = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=int(cfg["num-server-rounds"]), round_timeout=float(cfg["round-timeout"])),
        strategy=strategy,
    )
    workflow = DefaultWorkflow(
        fit_workflow=StrictSecAggPlus(
            num_shares=int(cfg["secaggplus-shares"]),
            reconstruction_threshold=int(cfg["secaggplus-threshold"]),
            # Under client-side DP each node weighs 1 (equal weights, as the noise assumes).
            max_weight=1.0 if mode else float(cfg["secaggplus-max-weight"]),
            clipping_range=float(cfg["secaggplus-clipping-range"]),
            quantization_range=int(cfg["secaggplus-quantization-range"]),
            timeout=float(cfg["round-timeout"]),
        )
    )
    workflow(grid, legacy)
    # Legacy records hold bare .npy bytes (no dtype or shape): read them back as arrays.
    record = legacy.state.array_records["parameters"]
    return ArrayRecord([np.load(io.BytesIO(a.data), allow_pickle=False) for a in record.values()])


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    if not cfg["initial-arrays"]:
        raise ValueError(
            "set run config `initial-arrays` to the directory written by "
            "`privpkt flower-client --export-initial DIR` (flwr run --run-config 'initial-arrays=\"DIR\"')"
        )
    desc, initial = load_initial(_directory(str(cfg["initial-arrays"]), "initial-arrays"))
    model = ConfigRecord({"privpkt-model": desc["fingerprint"]})
    train_config = ConfigRecord({"privpkt-model": desc["fingerprint"]})
    if int(cfg["local-epochs"]) > 0:
        train_config["local-epochs"] = int(cfg["local-epochs"])
    if float(cfg["lr"]) > 0:
        train_config["lr"] = float(cfg["lr"])

    if int(cfg.get("secaggplus-shares", 0)) > 0:
        final = run_secaggplus(grid, context, cfg, desc, initial, train_config)
        if cfg["save-final"]:
            save_final(_directory(str(cfg["save-final"]), "save-final"), desc, final)
        return

    min_nodes = int(cfg["min-nodes"])
    probe = str(cfg.get("norm-probe", ""))
    strategy = ProbedFedAvg(
        _directory(probe, "norm-probe") if probe else None,
        fraction_train=float(cfg["fraction-train"]),
        fraction_evaluate=float(cfg["fraction-evaluate"]),
        min_train_nodes=min_nodes,
        min_evaluate_nodes=min_nodes,
        min_available_nodes=min_nodes,
        # DP noise is calibrated for an equal-weight average: one node, one vote.
        weighted_by_key="unit-weight" if str(cfg.get("dp", "")) else "num-examples",
    )
    strategy = FailWhenAllFail(with_dp(strategy, cfg, min_nodes))
    result = strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=int(cfg["num-server-rounds"]),
        timeout=float(cfg["round-timeout"]),
        train_config=train_config,
        evaluate_config=model,
    )
    if cfg["save-final"]:
        save_final(_directory(str(cfg["save-final"]), "save-final"), desc, result.arrays)
