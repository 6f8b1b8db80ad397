"""The machine a run was made on, recorded with its results.

A time-budgeted training run's accuracy is set by the steps the machine gives: on the
project's 2-core hosts the default config's step took about 0.18 s with native bfloat16
(AVX-512 BF16 / AMX; 13585 steps in 40 minutes), 0.45 s in float32 on an AVX2 Zen 3 and
1.0 s on an AVX2 Zen 1 (docs/benchmarks.md). So checkpoints and benchmark reports carry
``host_info()``, and a figure can be read against the machine that made it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from .training.precision import bf16_supported

# instruction-set flags that decide the speed of a CPU training step (Linux /proc/cpuinfo names)
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def parse_cpuinfo(text: str) -> dict:
    """CPU model, family/model numbers and speed-relevant flags from the first processor
    block of a Linux ``/proc/cpuinfo`` text. Keys absent from the text are None; ``flags``
    lists the members of ``SPEED_FLAGS`` the CPU has, in that order."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough: the cores of one host match
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())

    def number(key: str) -> int | None:
        value = fields.get(key, "")
        return int(value) if value.isdigit() else None

    return {"cpu": fields.get("model name"), "cpu_family": number("cpu family"), "cpu_model": number("model"),
            "flags": [f for f in SPEED_FLAGS if f in flags]}


def host_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """What a benchmark reader needs to know about this machine: CPU (from ``cpuinfo``
    where it can be read, else ``platform.processor()``), logical CPUs, the threads torch
    uses, whether oneDNN runs bfloat16 natively, and the torch version."""
    try:
        cpu = parse_cpuinfo(Path(cpuinfo).read_text())
    except OSError:  # not Linux, or no procfs
        cpu = {"cpu": platform.processor() or None, "cpu_family": None, "cpu_model": None, "flags": []}
    return {**cpu, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "native_bf16": bf16_supported(), "torch": torch.__version__, "machine": platform.machine()}
