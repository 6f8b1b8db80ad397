"""Mixed precision for CPU training: bfloat16 autocast where the CPU has native bf16
(AVX-512 BF16 / AMX), float32 otherwise. Weights, optimiser state and losses stay float32."""

from __future__ import annotations

import contextlib
import logging

import torch

from ..config import PRECISIONS

logger = logging.getLogger(__name__)


def bf16_supported() -> bool:
    """Whether oneDNN can run bfloat16 kernels natively on this CPU."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # older builds without the query
        return False


def resolve_precision(requested: str) -> str:
    """The precision a run will use: ``requested``, except "bf16" on a CPU without native
    bf16 (emulated bf16 is slower than float32), which falls back to "fp32" with a warning.
    Raises ValueError for an unknown precision."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested == "bf16" and not bf16_supported():
        logger.warning("this CPU has no native bfloat16; training in float32 (slower)")
        return "fp32"
    return requested


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """Context for the forward pass: CPU bf16 autocast for "bf16", a no-op for "fp32"."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def as_float32(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Network outputs cast to float32 so the losses are computed in full precision."""
    return {k: v.float() for k, v in outputs.items()}
