"""`f2tune bench` refuses an option it cannot run before measuring anything: argparse's message for
a value no row could use, `f2tune: error:` for a device torch does not see, exit status 2 both."""

from __future__ import annotations

import pytest
import torch

from f2tune.bench import main as bench_main
from f2tune.cli import main


@pytest.fixture
def nothing_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """A row measured would fail the test: every option below is refused before the first one."""

    def measure(*args: object) -> list[str]:
        raise AssertionError("a row was measured")

    monkeypatch.setattr(bench_main, "measure", measure)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--sizes", "huge"], "argument --sizes: 'huge': not one of tiny, base"),
        (["--sizes", ""], "argument --sizes: '': not one of tiny, base"),
        (["--sizes", "tiny,tiny"], "'tiny,tiny' names one twice"),
        (["--modes", "full,fast"], "argument --modes: 'fast': not one of full, lora, frozen, generate, load"),
        (["--precision", "fp8"], "argument --precision: 'fp8' is not one of bf16-mixed, 16-mixed, 32-true"),
        (["--threads", "-1"], "argument --threads: must be at least 0, got -1"),
        (["--steps", "0"], "argument --steps: must be at least 1, got 0"),
        (["--steps", "-1"], "argument --steps: must be at least 1, got -1"),
        (["--steps", "two"], "argument --steps: 'two' is not a whole number"),
        (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
        (["--tiny-image-size", "0"], "argument --tiny-image-size: must be a positive multiple of 32"),
        (["--base-image-size", "100"], "argument --base-image-size: must be a positive multiple of 32"),
        (["--peak-tflops", "0"], "argument --peak-tflops: must be a number above 0, got 0"),
    ],
)
def test_options_no_row_could_use_are_refused_as_they_are_parsed(option, message, nothing_measured, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["bench", *option])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_a_cuda_device_torch_does_not_see_is_refused_before_any_row(nothing_measured, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "--device", "cuda"]) == 2
    assert "f2tune: error: --device cuda: torch sees no CUDA device here; use --device cpu" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:  # benchmarks/train_step.py: the same, in argparse's words
        bench_main.main(["--device", "cuda"])
    assert stopped.value.code == 2
    assert "error: --device cuda: torch sees no CUDA device here" in capsys.readouterr().err
