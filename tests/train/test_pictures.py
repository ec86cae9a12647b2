"""Validation pictures: the first samples of each task, reference beside prediction, on disk and in
TensorBoard at every validation that generates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from helpers import tiny_recipe
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from f2tune.data.sample import Sample
from f2tune.recipe import validate_recipe
from f2tune.testing.shapes import shape_samples
from f2tune.train.pictures import side_by_side, validation_pictures
from f2tune.train.run import fit


def record(sample: Sample, task: str, box: list[float]) -> dict:
    return {
        "id": sample.id,
        "task": task,
        "prompt": task,
        "reference": {"boxes": [box], "labels": ["shape"]},
        "prediction": {"boxes": [[0, 0, 10, 10]], "labels": ["shape"], "scores": [0.5]},
    }


def test_the_first_samples_of_each_task_are_drawn_and_shared_ids_left_out(tmp_path):
    samples = [replace(s, task="<OD>") for s in shape_samples(5, seed=3)]
    samples[3] = replace(samples[3], task="")
    twin = replace(samples[4], image=samples[0].image, origin="other.jsonl:1")
    records = [record(s, "<OD>", [1, 1, 20, 20]) for s in samples[:3]] + [record(samples[3], "", [2, 2, 9, 9])]
    records.append(record(samples[4], "<OD>", [3, 3, 9, 9]))
    pictures = validation_pictures(records, [*samples, twin], per_task=2)
    assert sorted(pictures) == ["OD-00-shapes-3-0", "OD-01-shapes-3-1", "custom-00-shapes-3-3"]


def test_one_dataset_read_for_two_tasks_draws_both():
    """Two sources over the same rows (grounding and segmentation of one dataset) number their
    samples alike; each task's picture is drawn on its own sample."""
    (detection,) = [replace(s, task="<OD>") for s in shape_samples(1, seed=3)]
    caption = replace(detection, task="<CAPTION>")
    records = [record(detection, "<OD>", [1, 1, 20, 20]), record(caption, "<CAPTION>", [1, 1, 20, 20])]
    pictures = validation_pictures(records, [detection, caption], per_task=1)
    assert sorted(pictures) == ["CAPTION-00-shapes-3-0", "OD-00-shapes-3-0"]


def test_small_images_are_drawn_at_a_readable_size_with_their_boxes_scaled():
    image = Image.new("RGB", (96, 48), (128, 128, 128))
    picture = side_by_side(image, {"boxes": [[0, 0, 48, 24]], "labels": ["a"]}, {"text": "a cat"}, "<OD>")
    assert picture.width == 2 * 384 + 8 and picture.height >= 192
    assert picture.getpixel((191, 96)) != (128, 128, 128), "the box's right edge moved with the image (x 48 -> 192)"


def test_a_fit_writes_pictures_and_shows_them_in_tensorboard(tmp_path):
    recipe = validate_recipe(tiny_recipe(tmp_path, eval={"pictures": 3, "before_fit": False}))
    run = fit(recipe).run_dir
    written = sorted(p.name for p in (run / "predictions" / "val-step000002" / "pictures").iterdir())
    assert len(written) == 3 and all(name.startswith("CAPTION-0") and name.endswith(".png") for name in written)
    events = EventAccumulator(str(next(Path(run / "logs" / "tensorboard").glob("version_*"))), {"images": 0})
    events.Reload()
    tags = events.Tags()["images"]
    assert len(tags) == 3 and all(tag.startswith("val/pictures/CAPTION-0") for tag in tags)
    assert [event.step for event in events.Images(tags[0])] == [2, 4]  # every validation: a slider per sample
