"""Initialise ``torch.distributed`` from the platform's environment, when torch is present."""

from __future__ import annotations

import datetime
import importlib
import os
from typing import Any


def init_torch_distributed(backend: str | None = None, timeout_seconds: float = 300.0) -> bool:
    """Join the data-parallel group described by MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK.

    Returns ``True`` when a process group was initialised (or already was), ``False`` for a
    single-process run (WORLD_SIZE unset or 1, or no RANK, as on parameter servers and
    evaluators). ``backend`` defaults to ``nccl`` when this replica sees a CUDA device and
    ``gloo`` otherwise. Raises ``RuntimeError`` when a group is described but torch is missing.
    """
    world_size = int(os.environ.get("WORLD_SIZE") or 1)
    if world_size <= 1 or os.environ.get("RANK") in (None, ""):
        return False
    try:
        torch: Any = importlib.import_module("torch")
        dist: Any = importlib.import_module("torch.distributed")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("WORLD_SIZE > 1 but PyTorch is not installed in this runtime") from exc
    if dist.is_initialized():
        return True
    cuda = bool(torch.cuda.is_available())
    chosen = backend or ("nccl" if cuda else "gloo")
    if cuda and chosen == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK") or 0))
    dist.init_process_group(
        backend=chosen,
        init_method="env://",
        world_size=world_size,
        rank=int(os.environ["RANK"]),
        timeout=datetime.timedelta(seconds=timeout_seconds),
    )
    return True
