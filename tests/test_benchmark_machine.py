"""benchmarks/machine.py: the machine line every benchmark prints beside its figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "machine.py"
_SPEC = importlib.util.spec_from_file_location("benchmark_machine", _PATH)
machine = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(machine)

TWO_PROCESSORS = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: Some Other CPU
"""


def test_cpu_model_names_the_first_processor(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(TWO_PROCESSORS)
    assert machine.cpu_model(cpuinfo) == "AMD EPYC 9R14 (family 25, model 17)"


def test_cpu_model_without_family_is_the_name_alone(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: ARMv8 Processor\n")
    assert machine.cpu_model(cpuinfo) == "ARMv8 Processor"


def test_cpu_model_unreadable_is_unknown(tmp_path: Path) -> None:
    assert machine.cpu_model(tmp_path / "absent") == "unknown"


def test_describe_names_model_cores_and_reference() -> None:
    line = machine.describe(0.614)
    assert line.startswith("machine: ") and "cores; reference loop 0.61 s" in line
