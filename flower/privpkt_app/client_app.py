"""The app's Python ClientApp. privpkt's organisations join with `privpkt flower-client` (a Rust
node speaking the Fleet API), so a Python SuperNode running this app refuses to work unless the
run config sets `python-reference-node = true`.

Then it is a *reference node* for mixed federations in tests: Flower's own `secaggplus_mod` in
front of a client that trains nothing and returns the weights it received plus
`reference-offset`, weighted by `reference-examples`. A SecAgg+ round with privpkt nodes and this
node checks that both implementations mask, share and encrypt compatibly."""

from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import Context


class Reference(NumPyClient):
    def __init__(self, offset: float, examples: int) -> None:
        self.offset = offset
        self.examples = examples

    def fit(self, parameters, config):
        return [p + self.offset for p in parameters], self.examples, {}

    def evaluate(self, parameters, config):
        return 0.0, self.examples, {}


def client_fn(context: Context):
    cfg = context.run_config
    if not cfg.get("python-reference-node", False):
        raise RuntimeError(
            "privpkt's nodes are `privpkt flower-client` processes; a Python SuperNode runs this app only "
            "as a test reference (run config python-reference-node = true)"
        )
    return Reference(float(cfg["reference-offset"]), int(cfg["reference-examples"])).to_client()


app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
