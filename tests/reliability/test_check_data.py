"""`f2tune check-data`: all problems of all splits at once, by kind, and target token lengths."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import shape_records, tiny_recipe
from PIL import Image, ImageChops

from f2tune.cli import main
from f2tune.config import AugmentConfig, DataConfig
from f2tune.data import check as data_check
from f2tune.data.check import check_data, kind_of
from f2tune.data.check_pictures import SamplePictures
from f2tune.data.images import load_image
from f2tune.data.sample import Sample
from f2tune.data.transforms import build_augmentation
from f2tune.predict.draw import readable


def write_recipe(tmp_path, data: dict) -> str:
    raw = tiny_recipe(tmp_path)
    raw["data"].update(data)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_every_problem_of_every_split_is_reported_with_counts_by_kind(tmp_path, write_jsonl, capsys):
    good = shape_records(3)
    train = write_jsonl(
        [*good, "{not json", {"image": good[0]["image"]}, {**good[0], "image": "images/nope.png"}, good[1]],
        name="train.jsonl",
    )
    (train.parent / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    val = write_jsonl([*good, {**good[0], "image": "images/broken.png"}], name="val.jsonl")
    coco = {
        "images": [{"id": 1, "file_name": good[0]["image"], "width": 96, "height": 96}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [90, 90, 40, 40], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "circle"}],
    }
    (train.parent / "coco.json").write_text(json.dumps(coco))
    recipe = write_recipe(
        tmp_path,
        {
            "train": [
                {"format": "jsonl", "path": str(train)},
                {"format": "coco_detection", "path": str(train.parent / "coco.json"), "image_root": str(train.parent)},
            ],
            "val": [{"format": "jsonl", "path": str(val)}],
            "test": [{"format": "jsonl", "path": str(tmp_path / "missing.jsonl")}],
        },
    )
    assert main(["check-data", recipe]) == 1
    out = capsys.readouterr().out
    assert "7 problem(s)" in out and "by kind: " in out
    assert "train.jsonl:4" in out and "[invalid JSON]" in out
    assert "train.jsonl:5" in out and "[missing field]" in out
    assert "train.jsonl:6" in out and "[missing image]" in out
    assert "val.jsonl:4" in out and "[unreadable image]" in out
    assert "coco.json:annotation 1" in out and "[coordinates out of range]" in out
    assert "train source 'coco'" in out and "[empty source]" in out
    assert "missing.jsonl" in out and "[missing file]" in out
    assert "train: 4 usable samples" in out and "val: 3 usable samples" in out


def test_target_lengths_are_measured_against_max_target_tokens(tmp_path, write_jsonl, processor):
    records = shape_records(4)
    records[0]["target"] = " ".join(["word"] * 40)
    config = DataConfig(train=[{"format": "jsonl", "path": str(write_jsonl(records))}], max_target_tokens=16)
    report = check_data(config, processor, 1024)
    assert not report.problems
    train = report.splits["train"]
    assert train.samples == 4 and max(train.target_tokens) > 40
    assert "1 (25.0%) longer than data.max_target_tokens=16 would be cut" in train.describe(16)


def test_prompts_too_long_for_the_encoder_and_an_impossible_target_limit_are_problems(tmp_path, write_jsonl, processor):
    records = shape_records(3)
    records[1] |= {"prompt": "what is " * 40, "target": "red"}
    config = DataConfig(train=[{"format": "jsonl", "path": str(write_jsonl(records))}], max_target_tokens=16)
    image_tokens = processor.image_processor.image_seq_length
    report = check_data(config, processor, image_tokens + 30)
    assert report.splits["train"].samples == 2 and len(report.splits["train"].target_tokens) == 2
    (problem,) = report.problems
    assert "train.jsonl:2: the prompt takes " in problem and f"beyond the {image_tokens + 30} positions" in problem
    assert kind_of(problem) == "prompt too long"
    (limit,) = check_data(config.model_copy(update={"train": []}), processor, 8).problems
    assert limit.startswith("data.max_target_tokens is 16, but the model's decoder has 8 positions")
    assert kind_of(limit) == "recipe setting"


def test_coordinates_past_an_image_of_unknown_size_are_found_when_it_is_opened(tmp_path, write_jsonl, capsys):
    """Structured records need not give width/height; their boxes are checked against the file."""
    image = shape_records(1)[0]["image"]
    records = [{"image": image, "task": "<OD>", "boxes": [[5, 5, 500, 40]], "labels": ["circle"]}]
    path = write_jsonl(records, name="objects.jsonl")
    recipe = write_recipe(tmp_path, {"train": [{"format": "structured_jsonl", "path": str(path)}], "val": []})
    assert main(["check-data", recipe]) == 1
    out = capsys.readouterr().out
    assert f"[coordinates out of range] {path}:1: boxes[0] lies outside the " in out


def test_an_image_of_another_size_than_its_record_states_is_found(tmp_path, write_jsonl, capsys):
    """The shapes are 96x96; a record saying 192x192 holds boxes twice as far out, which fit both."""
    image = shape_records(1)[0]["image"]
    records = [{"image": image, "task": "<OD>", "boxes": [[5, 5, 80, 40]], "labels": ["circle"]}]
    path = write_jsonl([{**records[0], "width": 192, "height": 192}], name="objects.jsonl")
    recipe = write_recipe(tmp_path, {"train": [{"format": "structured_jsonl", "path": str(path)}], "val": []})
    assert main(["check-data", recipe]) == 1
    assert f"{path}:1: the image is 96x96 as opened, but the annotation says 192x192" in capsys.readouterr().out


def test_a_special_token_in_an_annotations_text_is_found(tmp_path, write_jsonl, capsys):
    image = shape_records(1)[0]["image"]
    path = write_jsonl([{"image": image, "task": "<CAPTION>", "text": "a red </s> circle"}], name="captions.jsonl")
    recipe = write_recipe(tmp_path, {"train": [{"format": "structured_jsonl", "path": str(path)}], "val": []})
    assert main(["check-data", recipe]) == 1
    assert f"{path}:1: the target has </s>, one of the tokenizer's special tokens" in capsys.readouterr().out


def test_clean_data_exits_zero(tmp_path, capsys):
    assert main(["check-data", write_recipe(tmp_path, {})]) == 0
    assert "0 problem(s)" in capsys.readouterr().out


def test_kinds_come_from_the_messages():
    assert kind_of("a.jsonl:3: not valid JSON (Expecting value at column 1)") == "invalid JSON"
    assert kind_of("a.jsonl:3: something new") == "other"
    assert kind_of("a.jsonl:3: the target has <loc_1000>, which is no location token: ...") == "bad location tokens"
    assert kind_of("a.jsonl:3: <OD> answers have 4 location tokens per box (x1, y1, x2, y2), but ...") == (
        "bad location tokens"
    )
    assert kind_of("a.jsonl:3: task token <CAPTION_TO_PHRASE_GROUNDING> reads text after it") == "bad task or prompt"


def test_pictures_draw_the_first_samples_of_each_task_with_their_answers(tmp_path, write_jsonl, capsys):
    """Text targets are parsed back into boxes and drawn on their image, a few per split and task."""
    box = "circle<loc_100><loc_100><loc_600><loc_600>"
    records = [*shape_records(3), *({**r, "prompt": "<OD>", "target": box} for r in shape_records(2))]
    train = write_jsonl(records, name="train.jsonl")
    recipe = write_recipe(tmp_path, {"train": [{"format": "jsonl", "path": str(train)}]})
    folder = tmp_path / "pictures"
    assert main(["check-data", recipe, "--pictures", str(folder), "--pictures-per-task", "2"]) == 0
    assert f"pictures: 6 in {folder}" in capsys.readouterr().out  # 2 captions + 2 boxes (train), 2 captions (val)
    names = sorted(p.name for p in folder.glob("*.png"))
    assert ["-".join(n.split("-")[:2]) for n in names] == ["train-CAPTION"] * 2 + ["train-OD"] * 2 + ["val-CAPTION"] * 2
    image = load_image(train.parent / records[3]["image"], "test")
    drawn = Image.open(folder / names[2]).convert("RGB").crop((0, 0, *readable(image)[0].size))
    plain = readable(image)[0].convert("RGB")
    assert ImageChops.difference(drawn, plain).getbbox() is not None, "the box was not drawn"
    # a second check into the same folder replaces the first one's pictures, none left over
    assert main(["check-data", recipe, "--pictures", str(folder), "--pictures-per-task", "1"]) == 0
    assert sorted(p.name for p in folder.glob("*.png")) == [names[0], names[2], names[4]]


@pytest.fixture
def data_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the data would fail the test: the options below are refused before it."""

    def check_data(*args: object) -> None:
        raise AssertionError("the data was read")

    monkeypatch.setattr(data_check, "check_data", check_data)


def test_a_pictures_folder_of_other_files_or_a_file_is_refused_before_the_data_is_read(tmp_path, data_unread, capsys):
    """As `--out` is: drawing among the user's photos (or over a file) is refused, nothing touched."""
    recipe = write_recipe(tmp_path, {})
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"a photo")
    assert main(["check-data", recipe, "--pictures", str(photos)]) == 2
    assert (
        f"f2tune: error: {photos} exists and holds files f2tune did not write (holiday.jpg)" in capsys.readouterr().err
    )
    assert [p.name for p in photos.iterdir()] == ["holiday.jpg"]
    a_file = tmp_path / "notes.txt"
    a_file.write_text("notes")
    assert main(["check-data", recipe, "--pictures", str(a_file)]) == 2
    assert f"f2tune: error: {a_file} exists and is not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "notes"


@pytest.mark.parametrize("count", ["0", "-3"])
def test_pictures_per_task_below_one_is_refused(tmp_path, data_unread, capsys, count):
    """Below one printed `pictures: 0 in DIR` and made no DIR."""
    with pytest.raises(SystemExit) as refused:
        main(
            [
                "check-data",
                write_recipe(tmp_path, {}),
                "--pictures",
                str(tmp_path / "pictures"),
                "--pictures-per-task",
                count,
            ]
        )
    assert refused.value.code == 2 and not (tmp_path / "pictures").exists()
    assert f"f2tune check-data: error: argument --pictures-per-task: must be at least 1, got {count}" in (
        capsys.readouterr().err
    )


def test_pictures_per_task_without_pictures_is_refused(tmp_path, data_unread, capsys):
    """It was ignored."""
    assert main(["check-data", write_recipe(tmp_path, {}), "--pictures-per-task", "2"]) == 2
    assert "f2tune: error: --pictures-per-task needs --pictures DIR" in capsys.readouterr().err


def test_training_pictures_are_augmented_as_the_recipe_augments(tmp_path):
    """A box on the left of a training image is drawn on the right after a certain flip; the
    validation picture of the same sample is not flipped."""
    image = Image.new("RGB", (96, 96), (128, 128, 128))
    image.save(tmp_path / "img.png")
    sample = Sample(
        id="s", image=tmp_path / "img.png", prompt="", target="", origin="o", task="<OD>",
        reference={"boxes": [[4, 40, 30, 60]], "labels": ["cup"]},
    )  # fmt: skip
    flip = build_augmentation(AugmentConfig(enabled=True, hflip=1.0), seed=0)
    pictures = SamplePictures(tmp_path / "pictures", per_task=1, augmentation=flip)
    pictures.add("train", [(sample, "<OD>", "")])
    pictures.add("val", [(sample, "<OD>", "")])
    train, val = (Image.open(path).convert("RGB") for path in pictures.written)
    width = readable(image)[0].width
    left, right = (0, 0, width // 2, width), (width // 2, 0, width, width)
    plain = readable(image)[0]
    assert ImageChops.difference(train.crop(left), plain.crop(left)).getbbox() is None, "train: the left half is empty"
    assert ImageChops.difference(val.crop(right), plain.crop(right)).getbbox() is None, "val: the right half is empty"
