"""Placeholder ClientApp: Flower's app format requires one, but privpkt organisations join with
`privpkt flower-client` (a Rust node speaking the Fleet API), so this is never executed."""

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

app = ClientApp()


def _refuse(msg: Message, context: Context) -> Message:
    raise RuntimeError(
        "privpkt's nodes are `privpkt flower-client` processes; "
        "do not start Python SuperNodes for this app"
    )


app.train()(_refuse)
app.evaluate()(_refuse)
