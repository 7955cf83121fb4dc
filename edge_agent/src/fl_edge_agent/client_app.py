"""The device's Flower ClientApp (Message API): trains and evaluates on local data only.

It runs in the agent's warm ClientApp runtime (or, with ``clientapp_runtime = "isolated"``, in
a `flwr-clientapp` process per message); the agent daemon never imports it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl_edge_agent.local_privacy import local_dp_mod
from fl_shared.activity_file import ActivityFile
from fl_shared.datasets import ArrayDataset, load_dataset
from fl_shared.models import create_model
from fl_shared.partitioning import partition_indices
from fl_shared.training import evaluate, train

NUM_CLASSES = 10

app = ClientApp()


def local_data(context: Context, split: str) -> ArrayDataset:
    """This device's share of the run's dataset, read from its own data directory."""
    run, node = context.run_config, context.node_config
    return _local_data(
        str(run["dataset"]),
        split,
        str(node.get("data-dir", "")),
        str(run["partitioner"]),
        int(node.get("num-partitions", 1)),
        int(node.get("partition-id", 0)),
        float(run["dirichlet-alpha"]),
        int(run["seed"]),
    )


# A warm runtime (fl_edge_agent.warm_runtime) keeps this process across messages: the last
# run's train and test shares stay loaded instead of being read and partitioned again.
@functools.lru_cache(maxsize=2)
def _local_data(
    dataset: str,
    split: str,
    data_dir: str,
    partitioner: str,
    num_partitions: int,
    partition_id: int,
    alpha: float,
    seed: int,
) -> ArrayDataset:
    data = load_dataset(dataset, split, data_dir=data_dir or None)
    if num_partitions == 1:
        return data
    indices = partition_indices(
        data.labels,
        partitioner=partitioner,
        num_partitions=num_partitions,
        partition_id=partition_id,
        alpha=alpha,
        seed=seed,
    )
    return data.subset(indices)


def warm_up() -> float:
    """Pay the one-time costs before the first message; returns the seconds it took.

    The warm runtime calls this at start: the lazy imports of the data code (scikit-learn)
    and torch's first convolution, SGD step and kernel setup cost seconds, which would
    otherwise land in the first round of the first run.
    """
    started = time.monotonic()
    import sklearn.datasets
    import sklearn.model_selection  # noqa: F401

    generator = torch.Generator().manual_seed(0)
    images = torch.rand((64, 1, 28, 28), generator=generator).numpy()
    labels = torch.randint(0, NUM_CLASSES, (64,), generator=generator).numpy()
    warm_data = ArrayDataset(images=images, labels=labels)
    model = create_model("cnn", NUM_CLASSES)
    train(model, warm_data, epochs=1, batch_size=32, learning_rate=0.01)
    evaluate(model, warm_data)
    return time.monotonic() - started


def _model(msg: Message, context: Context) -> torch.nn.Module:
    threads = int(context.node_config.get("torch-threads", 0))
    if threads > 0:
        torch.set_num_threads(threads)
    model = create_model(str(context.run_config["model"]), NUM_CLASSES)
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    return model


@contextmanager
def _activity(context: Context, what: str) -> Iterator[None]:
    """Tell the agent (through its activity file) what this device is doing."""
    path = str(context.node_config.get("activity-file", ""))
    activity = ActivityFile(Path(path)) if path else None
    if activity is not None:
        activity.set(what)
    try:
        yield
    finally:
        if activity is not None:
            activity.set("idle")


def _device_record(context: Context) -> ConfigRecord:
    return ConfigRecord({"device-id": str(context.node_config.get("device-id", ""))})


# Local differential privacy, when the run asks for it (the mod reads the run config).
@app.train(mods=[local_dp_mod])
def train_handler(msg: Message, context: Context) -> Message:
    """Train the received global model on the local partition; reply with the new weights."""
    started = time.monotonic()
    run = context.run_config
    server_round = msg.content.config_records["config"].get("server-round", 0)
    assert isinstance(server_round, int)
    run_round = server_round + int(run.get("resume-from-round", 0))
    with _activity(context, f"training run {run['registry-run-id']} round {run_round}"):
        model = _model(msg, context)
        data = local_data(context, "train")
        max_samples = int(run["max-train-samples"]) or None
        result = train(
            model,
            data,
            epochs=int(run["local-epochs"]),
            batch_size=int(run["batch-size"]),
            learning_rate=float(run["learning-rate"]),
            max_samples=max_samples,
            # A new sample every round, different on every device.
            seed=int(run["seed"]) * 1000
            + (server_round + int(run.get("resume-from-round", 0))) * 97
            + int(context.node_config.get("partition-id", 0)),
        )
    delay = float(context.node_config.get("test-train-delay-s", 0.0))
    if delay > 0:  # test-only straggler knob (AgentSettings.test_train_delay_s)
        time.sleep(delay)
    metrics = MetricRecord(
        {
            "train-loss": result.loss,
            "train-loss-rms": result.loss_rms,
            "train-accuracy": result.accuracy,
            "num-examples": result.num_examples,
            "train-seconds": result.seconds,
            "handler-seconds": time.monotonic() - started,
        }
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": metrics,
            "device": _device_record(context),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_handler(msg: Message, context: Context) -> Message:
    """Evaluate the received global model on the local share of the test split."""
    run_id = context.run_config["registry-run-id"]
    with _activity(context, f"evaluating run {run_id}"):
        model = _model(msg, context)
        result = evaluate(model, local_data(context, "test"))
    metrics = MetricRecord(
        {
            "eval-loss": result.loss,
            "eval-accuracy": result.accuracy,
            "num-examples": result.num_examples,
        }
    )
    content = RecordDict({"metrics": metrics, "device": _device_record(context)})
    return Message(content=content, reply_to=msg)


@app.query()
def query_handler(msg: Message, context: Context) -> Message:
    """Answer the ServerApp's wake-up query: this device is here and its app is loaded."""
    content = RecordDict({"device": _device_record(context)})
    return Message(content=content, reply_to=msg)
