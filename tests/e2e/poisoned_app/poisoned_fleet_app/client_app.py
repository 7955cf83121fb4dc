"""ClientApp: trains on its share of digits; the poisoned partition answers with NaN weights.

Test only. It reaches devices solely as the app a test submits (``POST /api/v1/runs/app``):
the fleet's own ClientApp has no way to poison its replies.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl_shared.datasets import load_dataset
from fl_shared.models import create_model
from fl_shared.partitioning import partition_indices
from fl_shared.training import train

app = ClientApp()


@app.train()
def train_handler(msg: Message, context: Context) -> Message:
    """One local epoch on this device's partition; NaN everywhere on the poisoned one."""
    model = create_model("mlp", 10)
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    node = context.node_config
    data = load_dataset("digits", "train")
    share = data.subset(
        partition_indices(
            data.labels,
            partitioner="iid",
            num_partitions=int(node.get("num-partitions", 1)),
            partition_id=int(node.get("partition-id", 0)),
        )
    )
    result = train(model, share, epochs=1, learning_rate=0.05)
    state = model.state_dict()
    if int(node.get("partition-id", 0)) == int(context.run_config["poisoned-partition"]):
        state = {k: torch.full_like(v, float("nan")) for k, v in state.items()}
    metrics = MetricRecord({"train-loss": result.loss, "num-examples": result.num_examples})
    device = ConfigRecord({"device-id": str(node.get("device-id", ""))})
    content = RecordDict({"arrays": ArrayRecord(state), "metrics": metrics, "device": device})
    return Message(content=content, reply_to=msg)
