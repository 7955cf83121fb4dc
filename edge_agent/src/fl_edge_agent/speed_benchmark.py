"""Torch training-step speed of the configured model, within a time budget."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

TRAIN_BATCH: Final[int] = 32
NUM_CLASSES: Final[int] = 10


def measure_train_speed(
    model_name: str,
    budget_s: float,
    use_cuda: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Samples/s of SGD steps on random 1x28x28 batches, stepping until ``budget_s`` is spent.

    The first step (allocation, CUDA context, cuDNN autotuning) is timed apart and left out of
    the rate unless it is the only step that fits.
    """
    import torch  # heavy: loaded only when probing, never by the daemon
    import torch.nn.functional as F

    from fl_shared.models import create_model

    start = clock()
    device = torch.device("cuda" if use_cuda else "cpu")
    model = create_model(model_name, NUM_CLASSES).to(device)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(TRAIN_BATCH, 1, 28, 28, generator=generator).to(device)
    y = torch.randint(0, NUM_CLASSES, (TRAIN_BATCH,), generator=generator).to(device)

    def step() -> None:
        optimizer.zero_grad()
        F.nll_loss(model(x), y).backward()
        optimizer.step()
        if use_cuda:
            torch.cuda.synchronize()

    step_start = clock()
    step()
    first = clock() - step_start
    steps, bench_start, elapsed = 0, clock(), 0.0
    while clock() - start < budget_s:
        step()
        steps += 1
        elapsed = clock() - bench_start
    if steps == 0:
        return TRAIN_BATCH / max(first, 1e-9)
    return steps * TRAIN_BATCH / max(elapsed, 1e-9)
