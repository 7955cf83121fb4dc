"""ClientApp: train the global model on this node's IID share of digits."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl_shared.datasets import load_dataset
from fl_shared.models import create_model
from fl_shared.partitioning import partition_indices
from fl_shared.training import train

app = ClientApp()


@app.train()
def train_handler(msg: Message, context: Context) -> Message:
    """Train one round locally; reply with the weights and the number of examples."""
    run, node = context.run_config, context.node_config
    torch.set_num_threads(int(node.get("torch-threads", 1)))
    model = create_model(str(run["model"]), 10)
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())

    data = load_dataset(str(run["dataset"]), "train")
    partition_id = int(node["partition-id"])
    indices = partition_indices(
        data.labels,
        partitioner="iid",
        num_partitions=int(node["num-partitions"]),
        partition_id=partition_id,
        seed=int(run["seed"]),
    )
    server_round = int(str(msg.content.config_records["config"].get("server-round", 0)))
    result = train(
        model,
        data.subset(indices),
        epochs=int(run["local-epochs"]),
        batch_size=int(run["batch-size"]),
        learning_rate=float(run["learning-rate"]),
        seed=int(run["seed"]) * 1000 + server_round * 97 + partition_id,
    )
    metrics = MetricRecord(
        {
            "train-loss": result.loss,
            "num-examples": result.num_examples,
            "train-seconds": result.seconds,
        }
    )
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)
