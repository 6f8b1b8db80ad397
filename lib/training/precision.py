"""Mixed precision and the training device: bfloat16 autocast where the CPU has native bf16
(AVX-512 BF16 / AMX) or the CUDA GPU supports it, float32 otherwise. Weights, optimiser
state and losses stay float32."""

from __future__ import annotations

import contextlib
import logging

import torch

from ..config import DEVICES, PRECISIONS

logger = logging.getLogger(__name__)


def bf16_supported() -> bool:
    """Whether oneDNN can run bfloat16 kernels natively on this CPU."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # older builds without the query
        return False


def resolve_device(requested: str) -> torch.device:
    """The device a run will use: "cpu", "cuda" (raises RuntimeError where no CUDA GPU is
    visible) or "auto" (CUDA when visible, else the CPU). Raises ValueError for anything
    else."""
    if requested not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {requested!r}")
    cuda = torch.cuda.is_available()
    if requested == "cuda" and not cuda:
        raise RuntimeError("device 'cuda' requested but no CUDA GPU is visible to torch "
                           f"(torch {torch.__version__}); use device 'cpu' or 'auto'")
    return torch.device("cuda" if requested == "cuda" or (requested == "auto" and cuda) else "cpu")


def resolve_precision(requested: str, device: torch.device | str = "cpu") -> str:
    """The precision a run will use on ``device``: ``requested``, except "bf16" where the
    device has no native bf16 (a CPU without AVX-512 BF16 / AMX, where emulated bf16 is
    slower than float32, or an older GPU), which falls back to "fp32" with a warning.
    Raises ValueError for an unknown precision."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested == "bf16":
        if torch.device(device).type == "cuda":
            if not torch.cuda.is_bf16_supported():
                logger.warning("this GPU has no bfloat16; training in float32")
                return "fp32"
        elif not bf16_supported():
            logger.warning("this CPU has no native bfloat16; training in float32 (slower)")
            return "fp32"
    return requested


def autocast(precision: str, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """Context for the forward pass: bf16 autocast on ``device``'s type for "bf16", a no-op
    for "fp32"."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def as_float32(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Network outputs cast to float32 so the losses are computed in full precision."""
    return {k: v.float() for k, v in outputs.items()}
