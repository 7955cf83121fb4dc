"""The candidates of a run's next round: live eligible devices within its hard constraints."""

from __future__ import annotations

from collections.abc import Iterable

from fl_shared.wire import (
    CandidateListing,
    Device,
    RunRequest,
    SelectionCandidate,
    SelectionDecision,
)

# A device this hot is throttling (Jetson modules throttle from about 80-85 degrees C).
THROTTLE_TEMP_C = 80.0


def _accelerator(device: Device) -> str | None:
    caps = device.capabilities
    if caps is not None and caps.cuda.torch_cuda_ok:
        return "cuda"
    return None


def _excluded(device: Device, request: RunRequest) -> str | None:
    """Why the run's hard constraints keep the device out, or None."""
    if device.status not in ("online", "stale"):
        return f"device is {device.status}"
    if device.supernode_state in ("crashed", "stopped", "restarting"):
        return f"SuperNode is {device.supernode_state}"
    caps = device.capabilities
    if request.min_memory_mb:
        if caps is None or not caps.memory.total_bytes:
            return "memory unknown (no capabilities reported) and the run sets min_memory_mb"
        if caps.memory.total_bytes < request.min_memory_mb * 2**20:
            have = caps.memory.total_bytes // 2**20
            return f"{have} MiB memory, the run needs {request.min_memory_mb}"
    if request.required_accelerator == "cuda" and _accelerator(device) != "cuda":
        return "no CUDA accelerator, the run requires one"
    return None


def candidate_listing(devices: Iterable[Device], request: RunRequest) -> CandidateListing:
    """Split a run's eligible devices into candidates and those its constraints exclude."""
    listing = CandidateListing()
    for device in devices:
        why = _excluded(device, request)
        if why is not None:
            listing.excluded.append(
                SelectionDecision(device_id=device.device_id, selected=False, reason=why)
            )
            continue
        caps = device.capabilities
        beat = device.last_status
        readings = (beat.max_temp_c if beat else None, caps.max_temp_c() if caps else None)
        temps = [t for t in readings if t is not None]
        listing.candidates.append(
            SelectionCandidate(
                device_id=device.device_id,
                samples_per_s=caps.speed.torch_train_samples_per_s if caps else None,
                memory_bytes=(caps.memory.total_bytes or None) if caps else None,
                accelerator=_accelerator(device),
                throttled=bool(temps) and max(temps) >= THROTTLE_TEMP_C,
            )
        )
    return listing
