"""benchmarks/backbone_step.py prints a complete row for both backbones of each installed framework
(small images, one step; batch 2 because UperNet's pooled BatchNorm needs two). The table's shape is
checked, never its speed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks/backbone_step.py"


def _script():
    spec = importlib.util.spec_from_file_location("backbone_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize(
    ("framework", "reason"),
    [
        pytest.param("detectron2", "detectron2", marks=pytest.mark.detectron2),
        pytest.param("mmseg", "mmsegmentation", marks=pytest.mark.mmseg),
    ],
)
def test_table_has_both_backbones(framework: str, reason: str, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip(framework, reason=f"{reason} is not installed (backbones/README.md)")
    assert _script().main([framework, "--height", "64", "--width", "64", "--batch-size", "2", "--steps", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| ResNet-50", "| DaViT-B"))]
    assert len(rows) == 2 and not any("failed" in row for row in rows)
    assert all(len(row.split("|")) == 9 for row in rows)
