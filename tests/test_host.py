"""The host record stored with checkpoints and benchmark reports."""

import torch

from lib.host import host_info, parse_cpuinfo
from lib.training.precision import bf16_supported

ZEN1 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma

processor\t: 1
model name\t: something else
"""

SAPPHIRE = """processor\t: 0
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480C
flags\t\t: avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8
"""


def test_parse_cpuinfo_reads_the_first_block_and_the_speed_flags():
    assert parse_cpuinfo(ZEN1) == {"cpu": "AMD EPYC", "cpu_family": 23, "cpu_model": 1, "flags": ["avx2"]}
    info = parse_cpuinfo(SAPPHIRE)
    assert info["cpu_model"] == 143
    assert info["flags"] == ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]


def test_parse_cpuinfo_without_fields_gives_none():
    assert parse_cpuinfo("") == {"cpu": None, "cpu_family": None, "cpu_model": None, "flags": []}


def test_host_info_describes_this_machine(tmp_path):
    info = host_info()
    assert info["logical_cpus"] >= 1 and info["torch_threads"] == torch.get_num_threads()
    assert info["native_bf16"] == bf16_supported() and info["torch"] == torch.__version__
    missing = host_info(tmp_path / "no_cpuinfo")  # another OS: no procfs
    assert missing["flags"] == [] and missing["cpu_family"] is None
