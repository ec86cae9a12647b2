"""Saved Hugging Face datasets: prompt/target text per row, images decoded only when rendered."""

from __future__ import annotations

import io
import json
import pickle
import sys
from pathlib import Path

import pytest
from PIL import Image

from f2tune.config import DataConfig
from f2tune.data.formats import read_source, source_name
from f2tune.data.formats.hf_datasets import DatasetImage
from f2tune.data.images import load_image
from f2tune.data.problems import RecordProblems
from f2tune.errors import DataError

datasets = pytest.importorskip("datasets")

COLOURS = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]


def save(tmp_path: Path, prompts: list, targets: list, splits: tuple[str, ...] = (), as_bytes: bool = False) -> Path:
    images = [Image.new("RGB", (12, 8), COLOURS[i % len(COLOURS)]) for i in range(len(targets))]
    if as_bytes:
        buffers = [io.BytesIO() for _ in images]
        for image, buffer in zip(images, buffers):
            image.save(buffer, format="PNG")
        column, feature = [b.getvalue() for b in buffers], datasets.Value("binary")
    else:
        column, feature = images, datasets.Image()
    features = datasets.Features(
        {"img": feature, "prompt": datasets.Value("string"), "answer": datasets.Value("string")}
    )
    dataset = datasets.Dataset.from_dict({"img": column, "prompt": prompts, "answer": targets}, features=features)
    path = tmp_path / "saved"
    if splits:
        datasets.DatasetDict({name: dataset for name in splits}).save_to_disk(str(path))
    else:
        dataset.save_to_disk(str(path))
    return path


def read(path: Path, policy: str = "error", **options) -> tuple[list, RecordProblems]:
    entry = {"format": "hf_dataset", "path": str(path), "image_column": "img", "target_column": "answer", **options}
    problems = RecordProblems(policy)
    return read_source(DataConfig(train=[{"format": "shapes"}], val=[entry]).val[0], problems, "val"), problems


def test_rows_become_text_samples_with_lazy_images(tmp_path):
    path = save(tmp_path, ["<CAPTION>", "<OD>"], ["a red square", "square<loc_1><loc_2><loc_3><loc_4>"])
    samples, _ = read(path)
    assert [(s.prompt, s.target) for s in samples] == [
        ("<CAPTION>", "a red square"),
        ("<OD>", "square<loc_1><loc_2><loc_3><loc_4>"),
    ]
    image = samples[1].image
    assert isinstance(image, DatasetImage) and samples[1].origin == f"{path}:row 1"
    assert load_image(image, samples[1].origin).getpixel((0, 0)) == COLOURS[1]
    restored = pickle.loads(pickle.dumps(image))  # DataLoader workers get a pickled copy
    assert restored.render().getpixel((3, 3)) == COLOURS[1]


def test_bytes_column_split_and_default_prompt(tmp_path):
    path = save(tmp_path, ["", ""], ["one", "two"], splits=("train", "validation"), as_bytes=True)
    samples, _ = read(path, split="validation", prompt="<CAPTION>")
    assert [s.prompt for s in samples] == ["<CAPTION>", "<CAPTION>"]
    assert samples[0].image.render().size == (12, 8)
    config = DataConfig(train=[{"format": "hf_dataset", "path": str(path), "split": "validation"}])
    assert source_name(config.train[0]) == "saved-validation"
    with pytest.raises(DataError, match="no split given; set `split:` to one of train, validation"):
        read(path)
    with pytest.raises(DataError, match="no split 'test'"):
        read(path, split="test")


def test_bad_rows_and_columns(tmp_path):
    path = save(tmp_path, ["<CAPTION>", "<CAPTON>", "<CAPTION>", "<OD>"], ["x", "y", "", "cat<loc_1><loc_2>"])
    with pytest.raises(DataError, match=r"row 1: unknown task token <CAPTON>"):
        read(path)
    samples, problems = read(path, policy="skip")
    assert len(samples) == 1 and len(problems.found) == 3
    assert "row 2: column 'answer' must hold non-empty text" in problems.found[1]
    assert "row 3: <OD> answers have 4 location tokens per box (x1, y1, x2, y2), but a run of 2" in problems.found[2]
    with pytest.raises(DataError, match="no column\\(s\\) caption; the dataset has img, prompt, answer"):
        read(path, target_column="caption")
    with pytest.raises(DataError, match="holds a single dataset, not splits"):
        read(path, split="train")
    with pytest.raises(DataError, match="nowhere: `datasets.load_dataset` cannot read it"):
        read(tmp_path / "nowhere")


def test_each_sample_has_the_task_of_its_prompt(tmp_path):
    """Per-task metrics and the model card's task list go by `Sample.task`, as for JSONL."""
    path = save(tmp_path, ["<OD>", "What colour?"], ["square<loc_1><loc_2><loc_3><loc_4>", "red"])
    samples, _ = read(path)
    assert [s.task for s in samples] == ["<OD>", ""]


@pytest.fixture
def hub_layout(tmp_path, monkeypatch) -> Path:
    """A dataset folder as the Hub holds one (parquet files per split, DocVQA's columns); the
    `datasets` cache it is read into goes to tmp_path."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "answers": datasets.List(datasets.Value("string")),
        }
    )
    images = [Image.new("RGB", (12, 8), colour) for colour in COLOURS]
    rows = {"image": images, "question": ["What?", "Who?", "<OCR>"], "answers": [["b", "a", "a"], ["c"], ["d"]]}
    folder = tmp_path / "DocumentVQA"
    (folder / "data").mkdir(parents=True)
    for split in ("train", "validation"):
        datasets.Dataset.from_dict(rows, features=features).to_parquet(folder / f"data/{split}-00000-of-00001.parquet")
    return folder


def test_a_folder_of_data_files_with_answer_lists_gives_question_samples(hub_layout):
    samples, problems = read(hub_layout, "skip", split="validation", image_column="image",
                             prompt_column="question", target_column="answers")  # fmt: skip
    assert [s.reference for s in samples] == [
        {"query": "What?", "text": "a", "answers": ["b", "a", "a"]},
        {"query": "Who?", "text": "c", "answers": ["c"]},
    ]
    assert samples[0].task == "" and samples[0].origin == f"{hub_layout}[validation]:row 0"
    assert samples[1].image.render().getpixel((0, 0)) == COLOURS[1]
    assert "row 2: column 'answers' holds a list, which only a free-text prompt (a question" in problems.found[0]
    assert (
        "or a caption task (<CAPTION>, <DETAILED_CAPTION>, <MORE_DETAILED_CAPTION>: its captions)" in problems.found[0]
    )
    with pytest.raises(DataError, match=r"Unknown split \"test\""):
        read(hub_layout, split="test", image_column="image", prompt_column="question", target_column="answers")


@pytest.mark.parametrize("one_per_image", [False, True])
def test_caption_lists_give_a_sample_per_caption_or_one_per_image_with_all(tmp_path, monkeypatch, one_per_image):
    """Caption datasets on the Hub keep an image's captions in one list (COCO: five)."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    features = datasets.Features({"image": datasets.Image(), "captions": datasets.List(datasets.Value("string"))})
    rows = {
        "image": [Image.new("RGB", (12, 8), c) for c in COLOURS[:2]],
        "captions": [["a dog ", "a brown dog"], ["x"]],
    }
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "saved"))
    samples, _ = read(tmp_path / "saved", image_column="image", prompt_column=None, prompt="<DETAILED_CAPTION>",
                      target_column="captions", one_per_image=one_per_image)  # fmt: skip
    assert {s.task for s in samples} == {"<DETAILED_CAPTION>"}
    if one_per_image:
        assert [s.reference for s in samples] == [
            {"text": "a dog", "answers": ["a dog", "a brown dog"]},
            {"text": "x", "answers": ["x"]},
        ]
        assert [s.id for s in samples] == ["saved-0", "saved-1"]
    else:
        assert [s.reference for s in samples] == [{"text": "a dog"}, {"text": "a brown dog"}, {"text": "x"}]
        assert [s.id for s in samples] == ["saved-0-0", "saved-0-1", "saved-1-0"]
        assert samples[1].origin.endswith("saved:row 0 caption 1")
    assert samples[-1].image.render().getpixel((0, 0)) == COLOURS[1]


def test_a_folder_of_images_with_metadata(tmp_path, monkeypatch):
    """`datasets`' imagefolder layout: the images beside a metadata.jsonl of `file_name`, prompt, target."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "photos" / "train"
    folder.mkdir(parents=True)
    lines = []
    for index, colour in enumerate(COLOURS[:2]):
        Image.new("RGB", (12, 8), colour).save(folder / f"{index}.png")
        lines.append(json.dumps({"file_name": f"{index}.png", "prompt": "<CAPTION>", "answer": f"colour {index}"}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    samples, _ = read(tmp_path / "photos", split="train", image_column="image")
    assert [(s.task, s.target) for s in samples] == [("<CAPTION>", "colour 0"), ("<CAPTION>", "colour 1")]
    assert samples[1].image.render().getpixel((0, 0)) == COLOURS[1]


def test_a_hub_id_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(
        DataError, match=r"someone/docs \(subset en\): not a local folder, and the Hub cannot be reached"
    ):
        read(Path("someone/docs"), split="train", subset="en")


def test_a_save_to_disk_folder_has_no_hub_options(tmp_path):
    path = save(tmp_path, ["<CAPTION>"], ["x"])
    with pytest.raises(DataError, match="a save_to_disk folder has no `subset` or `revision`"):
        read(path, revision="main")


def test_undecodable_image_names_the_row(tmp_path):
    dataset = datasets.Dataset.from_dict({"img": [b"not a png"], "prompt": ["<CAPTION>"], "answer": ["x"]})
    dataset.save_to_disk(str(tmp_path / "saved"))
    (sample,), _ = read(tmp_path / "saved")
    with pytest.raises(DataError, match="saved:row 0: cannot decode image in column 'img'"):
        sample.image.render()


def test_image_paths_start_from_image_root(tmp_path):
    """Datasets that name image files (COCO's) rather than hold them: paths relative to `image_root`,
    a missing file named with its whole path."""
    (tmp_path / "coco" / "train2014").mkdir(parents=True)
    Image.new("RGB", (12, 8), (255, 0, 0)).save(tmp_path / "coco" / "train2014" / "a.png")
    rows = {"img": ["train2014/a.png", "train2014/gone.png"], "prompt": ["<CAPTION>"] * 2, "answer": ["red"] * 2}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "refs"))
    samples, _ = read(tmp_path / "refs", image_root=str(tmp_path / "coco"))
    assert samples[0].image.render().size == (12, 8)
    with pytest.raises(DataError, match=f"row 1: image not found: {tmp_path / 'coco' / 'train2014' / 'gone.png'}"):
        samples[1].image.render()


def test_images_are_upright_per_their_exif_orientation_as_datasets_decodes_them(tmp_path):
    """A phone photo stored sideways with Orientation 6: 40x20 pixels, seen (and annotated) as 20x40."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 0, 0)).save(buffer, format="JPEG", exif=exif)
    features = datasets.Features({"img": datasets.Image(), "prompt": datasets.Value("string"),
                                  "answer": datasets.Value("string")})  # fmt: skip
    rows = {"img": [{"bytes": buffer.getvalue(), "path": None}], "prompt": ["<CAPTION>"], "answer": ["x"]}
    dataset = datasets.Dataset.from_dict(rows, features=features)
    dataset.save_to_disk(str(tmp_path / "saved"))
    (sample,), _ = read(tmp_path / "saved")
    assert sample.image.render().size == dataset[0]["img"].size == (20, 40)


def test_missing_datasets_package_is_a_clear_error(tmp_path, monkeypatch):
    path = save(tmp_path, ["<CAPTION>"], ["x"])
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError, match=r"needs the `datasets` package: pip install 'f2tune\[datasets\]'"):
        read(path)
