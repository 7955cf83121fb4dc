"""ClientApp: trains the global model on this device's share of scikit-learn's digits."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl_shared.datasets import load_dataset
from fl_shared.models import create_model
from fl_shared.partitioning import partition_indices
from fl_shared.training import train

app = ClientApp()


@app.train()
def train_handler(msg: Message, context: Context) -> Message:
    """One local epoch on this device's partition (the agent sets partition-id in node config)."""
    model = create_model("mlp", 10)
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    data = load_dataset("digits", "train")
    node = context.node_config
    share = data.subset(
        partition_indices(
            data.labels,
            partitioner="iid",
            num_partitions=int(node.get("num-partitions", 1)),
            partition_id=int(node.get("partition-id", 0)),
        )
    )
    result = train(
        model,
        share,
        epochs=int(context.run_config["local-epochs"]),
        learning_rate=float(context.run_config["learning-rate"]),
    )
    metrics = MetricRecord({"train-loss": result.loss, "num-examples": result.num_examples})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)
