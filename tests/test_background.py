"""Background tasks yield the CPU only inside MONAI Label's task processes."""

import os
import subprocess
import sys

import pytest

import lib.background as background
from lib.app_config import AppSettings


def test_outside_a_task_process_nothing_changes():
    before = os.nice(0)
    assert not background.in_task_process()
    assert background.yield_cpu(10) is False
    assert os.nice(0) == before


def test_a_task_process_lowers_its_priority_once(tmp_path):
    """Run as MONAI Label runs its tasks (``python -m monailabel.interfaces.utils.app``): a
    stand-in module of that name in a temporary package path calls ``yield_cpu`` twice."""
    pkg = tmp_path / "monailabel" / "interfaces" / "utils"
    pkg.mkdir(parents=True)
    for d in (tmp_path / "monailabel", tmp_path / "monailabel" / "interfaces", pkg):
        (d / "__init__.py").write_text("")
    (pkg / "app.py").write_text(
        "import os\nfrom lib.background import yield_cpu\n"
        "n0 = os.nice(0)\nfirst, second = yield_cpu(5), yield_cpu(5)\n"
        "print(first, second, os.nice(0) - n0)\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), repo]))
    out = subprocess.run([sys.executable, "-m", "monailabel.interfaces.utils.app"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert out == ["True", "False", "5"]


def test_background_nice_setting_is_parsed_and_bounded():
    assert AppSettings().background_nice == 10
    assert AppSettings.from_conf({"background_nice": "0"}).background_nice == 0
    for bad in ("-1", "20"):
        with pytest.raises(ValueError, match="background_nice"):
            AppSettings.from_conf({"background_nice": bad})
