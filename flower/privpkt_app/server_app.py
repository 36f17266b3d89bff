"""privpkt's ServerApp: Flower's own FedAvg over the weights of privpkt's Rust nodes.

The initial model comes from `privpkt flower-client --data DS --export-initial DIR`: one
`<i>.npy` per tensor in parameter order and `model.json` (names, shapes, fingerprint). The
fingerprint travels in every train/evaluate config as `privpkt-model`, so a node whose data
makes a different model (other classes, representation or architecture) refuses instead of
averaging mismatched weights.
"""

import json
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

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

    min_nodes = int(cfg["min-nodes"])
    strategy = FedAvg(
        fraction_train=float(cfg["fraction-train"]),
        fraction_evaluate=float(cfg["fraction-evaluate"]),
        min_train_nodes=min_nodes,
        min_evaluate_nodes=min_nodes,
        min_available_nodes=min_nodes,
    )
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
