"""Shared fixtures: a tiny Florence-2 saved like a Hub checkpoint, and JSONL datasets written to tmp."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # two threads fighting over 2 cores make tiny steps 100x slower
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from f2tune.testing.shapes import shape_samples  # noqa: E402
from f2tune.testing.tiny import build_tiny_model, build_tiny_processor, save_tiny  # noqa: E402

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model + processor folder, loadable with from_pretrained (stands in for a Hub id)."""
    return save_tiny(tmp_path_factory.mktemp("tiny") / "florence2-tiny")


@pytest.fixture(scope="session")
def processor():
    return build_tiny_processor()


@pytest.fixture
def tiny_model(processor):
    return build_tiny_model(processor).train()


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    """Write records (dicts, or raw strings for malformed lines) as JSONL, with shape images beside it."""

    def write(records: list[dict | str], name: str = "train.jsonl", images: int = 4) -> Path:
        folder = tmp_path / "data"
        (folder / "images").mkdir(parents=True, exist_ok=True)
        for sample in shape_samples(images, seed=5):
            sample.image.render().save(folder / "images" / f"{sample.id}.png")
        path = folder / name
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
        return path

    return write


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` are skipped, with the reason, where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
