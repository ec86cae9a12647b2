"""`f2tune predict`: JSONL results and pictures, from a model folder, an adapter folder, a run or
one of its checkpoints."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from helpers import tiny_recipe
from PIL import Image

from f2tune.cli import main
from f2tune.errors import DataError, RecipeError
from f2tune.eval.generate import Generation
from f2tune.log import setup_logging
from f2tune.predict import run as predict_run
from f2tune.predict.draw import draw_annotation
from f2tune.predict.load import inference_device
from f2tune.predict.run import PredictRequest, predict
from f2tune.testing.shapes import shape_samples


@pytest.fixture
def images(tmp_path):
    paths = []
    for sample in shape_samples(3, seed=8):
        path = tmp_path / f"{sample.id}.png"
        sample.image.render().save(path)
        paths.append(path)
    return paths


def test_predict_writes_one_line_and_one_picture_per_image(tiny_dir, images, tmp_path):
    out = predict(str(tiny_dir), images, PredictRequest(task="<OD>"), tmp_path / "out", batch_size=2)
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in images]
    assert all(r["task"] == "<OD>" and r["prompt"] == "<OD>" and "boxes" in r["result"] for r in records)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{p.stem}.png" for p in images)


def test_folders_are_read_and_pictures_of_images_with_one_name_are_both_kept(tiny_dir, images, tmp_path):
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    Image.open(images[0]).save(folder / f"{images[0].stem}.JPG")  # same stem as images[0]
    Image.open(images[1]).save(folder / "b.png")
    out = predict(str(tiny_dir), [images[0], folder], PredictRequest(), tmp_path / "out")
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    stem = images[0].stem
    assert [(r["image"], r["picture"]) for r in records] == [
        (str(images[0]), f"{stem}.png"),
        (str(folder / "b.png"), "b.png"),  # a folder's images in name order
        (str(folder / f"{stem}.JPG"), f"{stem}-2.png"),
    ]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(r["picture"] for r in records)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: a folder with no image files"):
        predict(str(tiny_dir), [tmp_path / "empty"], PredictRequest(), tmp_path / "y")


def test_text_input_and_free_prompts_reach_the_model(tiny_dir, images, tmp_path):
    out = predict(
        str(tiny_dir), images[:1], PredictRequest(task="<CAPTION_TO_PHRASE_GROUNDING>", text="a shape"), tmp_path / "a"
    )
    assert json.loads((out / "predictions.jsonl").read_text())["prompt"] == "<CAPTION_TO_PHRASE_GROUNDING>a shape"
    out = predict(str(tiny_dir), images[:1], PredictRequest(prompt="What colour is it?"), tmp_path / "b")
    assert json.loads((out / "predictions.jsonl").read_text())["prompt"] == "What colour is it?"


def test_bad_requests_are_explained(tiny_dir, images, tmp_path):
    with pytest.raises(DataError, match="unknown task '<DETECT>'; known tasks: <CAPTION>"):
        predict(str(tiny_dir), images, PredictRequest(task="<DETECT>"), tmp_path / "x")
    with pytest.raises(DataError, match=r"unknown task '<CAPTON>' \(did you mean <CAPTION>\?\)"):
        predict(str(tiny_dir), images, PredictRequest(task="<CAPTON>"), tmp_path / "x")
    with pytest.raises(DataError, match="image not found: .*missing.png"):
        predict(str(tiny_dir), [tmp_path / "missing.png"], PredictRequest(), tmp_path / "x")
    with pytest.raises(DataError, match=r"--prompt/--text: the prompt takes \d+ tokens .* positions of the model's"):
        predict(str(tiny_dir), images, PredictRequest(prompt="what is " * 200), tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (PredictRequest(task="<CAPTION_TO_PHRASE_GROUNDING>"), "takes an input: give it with --text TEXT"),
        (PredictRequest(task="<REGION_TO_CATEGORY>"), "takes an input: give it with --region x1,y1,x2,y2"),
        (PredictRequest(text="a cat"), "--text is not an input of <CAPTION>, which takes none"),
        (PredictRequest(task="<OD>", region=[1, 1, 5, 5]), "--region is not an input of <OD>"),
        (PredictRequest(prompt="What is it?", text="a cat"), "give one of them"),
        (PredictRequest(prompt="What is it?", region=[1, 1, 5, 5]), "which takes --prompt alone"),
        (PredictRequest(task="<REGION_TO_CATEGORY>", region=[9, 1, 5, 5]), "x2 < x1 or y2 < y1"),
        (PredictRequest(task="<REGION_TO_CATEGORY>", region=[1, 1, 5, 500]), r"lies outside .*\(96x96\): a region is"),
        (PredictRequest(task="<CAPTION_TO_PHRASE_GROUNDING>", text=""), r"^--text is empty: give the text itself"),
        (PredictRequest(task="<CAPTION_TO_PHRASE_GROUNDING>", text="  "), r"^--text is empty"),
        (PredictRequest(prompt=""), r"^--prompt is empty"),
        (
            PredictRequest(task="<REGION_TO_CATEGORY>", region=[math.nan] * 4),
            r"^--region must be 4 finite numbers x1,y1,x2,y2 in pixels, got nan,nan,nan,nan$",
        ),
        (PredictRequest(task="<REGION_TO_CATEGORY>", region=[1, 2, 3]), r"^--region must be 4 finite numbers"),
        (PredictRequest(prompt="<OD>"), r"^--prompt '<OD>' starts with the task token <OD>: give --task <OD>$"),
        (
            PredictRequest(prompt="<CAPTION_TO_PHRASE_GROUNDING>a cat"),
            r"give --task <CAPTION_TO_PHRASE_GROUNDING> with --text$",
        ),
        (PredictRequest(prompt="<od>"), r"^--prompt: <od> is no task token .*: write <OD>$"),
        (
            PredictRequest(task="<CAPTION_TO_PHRASE_GROUNDING>", text="a cat <OD>"),
            r"^--text: a prompt takes one task token",
        ),
        (PredictRequest(task="<od>"), r"^unknown task '<od>' \(did you mean <OD>\?\); known tasks"),
        (PredictRequest(task="od"), r"^unknown task 'od' \(did you mean <OD>\?\)"),
        (PredictRequest(task="<OD>", prompt="What is it?"), r"^--prompt is a whole free-text prompt and --task"),
        (PredictRequest(task="<CAPTION>", prompt="What is it?"), "give one of them"),
    ],
)
def test_inputs_that_do_not_fit_the_task_stop_before_the_model_loads(images, tmp_path, request_, message):
    """The model named does not exist: each request is refused before anything is loaded, in the
    options' terms (neither the data fields the prompt is built from nor the task named twice)."""
    with pytest.raises(DataError, match=message) as refused:
        predict(str(tmp_path / "no-model"), images, request_, tmp_path / "x")
    assert "annotation field" not in str(refused.value)


@pytest.mark.parametrize("batch_size", ["0", "-2"])
def test_a_batch_size_below_one_is_refused_before_the_model_loads(images, tmp_path, capsys, batch_size):
    """-2 wrote an empty predictions.jsonl; 0 failed in range() after the model loaded."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as refused:
        main(["predict", str(tmp_path / "no-model"), str(images[0]), "--batch-size", batch_size, "--out", str(out)])
    assert refused.value.code == 2 and not out.exists()
    assert f"f2tune predict: error: argument --batch-size: must be at least 1, got {batch_size}" in (
        capsys.readouterr().err
    )
    with pytest.raises(RecipeError, match=f"--batch-size must be at least 1, got {batch_size}"):  # called from Python
        predict(str(tmp_path / "no-model"), images, PredictRequest(), out, batch_size=int(batch_size))


def test_a_prompt_with_a_task_on_the_command_line_is_refused(images, tmp_path, capsys):
    """`--task` has a default, but one given beside `--prompt` was dropped unsaid."""
    args = ["predict", str(tmp_path / "no-model"), str(images[0]), "--prompt", "What is it?"]
    assert main([*args, "--task", "<OD>"]) == 2
    assert "--prompt is a whole free-text prompt and --task a task token: give one of them" in capsys.readouterr().err
    assert main([*args, "--region", "1,a,3,4"]) == 2
    assert "f2tune: error: --region 1,a,3,4: 'a' is not a number; give x1,y1,x2,y2 in pixels" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("checkpoints", "message"),
    [
        (
            ["last.ckpt", "best-step=4.ckpt"],
            r"give one of its checkpoints instead: .*run/checkpoints/last.ckpt, .*best-",
        ),
        ([], r"it has no checkpoint either \(.*run/checkpoints\); train it first"),
    ],
)
def test_a_run_folder_without_an_export_names_its_checkpoints(images, tmp_path, capsys, checkpoints, message):
    """A run with export off, or stopped early: loaded as a model folder it failed for want of a
    model_type key; now it is refused before the model loads (the checkpoints here are empty files)."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model: {}\n")
    for name in checkpoints:
        (run / "checkpoints" / name).touch()
    assert main(["predict", str(run), str(images[0]), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"f2tune: error: {run} is a run folder without an export/ (export disabled" in err
    assert re.search(message, err)


def test_an_output_folder_of_other_files_is_refused_before_the_model_loads(images, tmp_path, capsys):
    """`--out` pointing at the photos themselves: nothing is written, nothing deleted."""
    photos = images[0].parent
    before = sorted(p.name for p in photos.iterdir())
    assert main(["predict", str(tmp_path / "no-model"), str(images[0]), "--out", str(photos)]) == 2
    assert "holds files f2tune did not write" in capsys.readouterr().err
    assert sorted(p.name for p in photos.iterdir()) == before


def test_files_that_are_no_images_are_all_named_before_the_model_loads(images, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.open(images[0]).save(folder / "a.png")
    for name in ("b.jpg", "c.png"):
        (folder / name).write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"2 of 3 images cannot be read: cannot read image .*b.jpg.*; .*c.png"):
        predict(str(tmp_path / "no-model"), [folder], PredictRequest(), tmp_path / "x")


def test_an_image_cut_short_gets_an_error_line_and_the_others_their_results(tiny_dir, images, tmp_path, capsys):
    """A JPEG whose data ends early passes the header check and fails only when decoded: that
    stopped the run at its batch, losing the results of every image before it."""
    setup_logging()
    cut = tmp_path / "cut.jpg"
    Image.open(images[0]).convert("RGB").save(cut, quality=95)
    cut.write_bytes(cut.read_bytes()[:-200])
    out = predict(str(tiny_dir), [images[0], cut, images[1]], PredictRequest(task="<OD>"), tmp_path / "out", 2)
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["image"] for r in records] == [str(images[0]), str(cut), str(images[1])]
    assert "truncated" in records[1]["error"] and "result" not in records[1]
    assert all("result" in r for r in (records[0], records[2]))
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{p.stem}.png" for p in images[:2])
    assert "predict: 1 of 3 images could not be decoded and have no result" in capsys.readouterr().err


def test_region_is_checked_against_the_upright_image(tiny_dir, tmp_path):
    """A photo stored sideways with an EXIF orientation is predicted on upright (as `load_image`
    turns it), so `--region` is in the upright image's pixels."""
    sideways = Image.new("RGB", (60, 40), "red")
    exif = sideways.getexif()
    exif[0x0112] = 6  # turned a quarter: upright it is 40 wide, 60 high
    sideways.save(tmp_path / "photo.jpg", exif=exif)
    request = PredictRequest(task="<REGION_TO_CATEGORY>", region=[0, 0, 40, 60])
    out = predict(str(tiny_dir), [tmp_path / "photo.jpg"], request, tmp_path / "out")
    assert json.loads((out / "predictions.jsonl").read_text())["prompt"].startswith("<REGION_TO_CATEGORY><loc_0>")
    with pytest.raises(DataError, match=r"lies outside .*photo.jpg \(40x60\)"):
        predict(
            str(tiny_dir),
            [tmp_path / "photo.jpg"],
            PredictRequest(task="<REGION_TO_CATEGORY>", region=[0, 0, 60, 40]),
            tmp_path / "y",
        )


def test_cli_predict_with_a_region(tiny_dir, images, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["predict", str(tiny_dir), str(images[0]), "--task", "<REGION_TO_CATEGORY>"]
    assert main([*args, "--region", "10,10,50,50", "--out", str(out)]) == 0
    assert json.loads((out / "predictions.jsonl").read_text())["prompt"].startswith("<REGION_TO_CATEGORY><loc_")
    assert main([*args[:5], "--region", "1,2,3", "--out", str(out)]) == 2
    assert "--region must be 4 finite numbers x1,y1,x2,y2 in pixels" in capsys.readouterr().err


def test_cli_predict_on_a_chosen_device_and_dtype(tiny_dir, images, tmp_path, capsys, monkeypatch):
    out = tmp_path / "bf16"
    args = ["predict", str(tiny_dir), str(images[0]), "--out", str(out)]
    chosen = []
    switch = predict_run.use_attention
    monkeypatch.setattr(predict_run, "use_attention", lambda model, kind: chosen.append(kind) or switch(model, kind))
    assert main([*args, "--device", "cpu", "--dtype", "bfloat16"]) == 0
    assert json.loads((out / "predictions.jsonl").read_text())["text"] is not None
    assert chosen == ["eager"]  # SDPA is slower on a CPU in bf16 (f2tune.model.attention)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([*args, "--device", "cuda"]) == 2
    assert "--device cuda: torch sees no CUDA device here; use --device cpu" in capsys.readouterr().err
    assert main([*args, "--device", "gpu0"]) == 2
    assert "--device gpu0: not a device name" in capsys.readouterr().err
    assert inference_device("auto") == torch.device("cpu")


def test_answers_without_a_region_are_said_and_shown_as_text(tiny_dir, images, tmp_path, monkeypatch, capsys):
    """A model never trained on `<OD>` answers it with a caption: the result was empty, the picture
    bare, and nothing said why."""
    answers = iter(["a blue triangle", "square<loc_10><loc_10><loc_500><loc_500>", ""])

    def answer(model, processor, inputs, spec, scores):
        text = next(answers)
        ids = processor.tokenizer(text, add_special_tokens=False).input_ids
        return [Generation(text, ids, [0.5] * len(ids)) for _ in inputs["input_ids"]]

    monkeypatch.setattr(predict_run, "generate", answer)
    setup_logging()  # as the command line does
    out = predict(str(tiny_dir), images, PredictRequest(task="<OD>"), tmp_path / "out", batch_size=1)
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [len(r["result"]["boxes"]) for r in records] == [0, 1, 0]
    said = [line for line in capsys.readouterr().err.splitlines() if "held text but no region" in line]
    assert said == [
        "f2tune: predict: 1 of 3 answers to <OD> held text but no region that task's parser reads, e.g. 'a blue "
        "triangle': was the model trained on <OD>, and long enough? Their results are empty; their pictures show "
        "the text"
    ]
    bare = Image.open(images[0])
    assert Image.open(out / f"{images[0].stem}.png").height > bare.height  # the text band under the image
    assert Image.open(out / f"{images[2].stem}.png").height > bare.height  # the title band only
    assert Image.open(out / f"{images[2].stem}.png").height < Image.open(out / f"{images[0].stem}.png").height


def test_drawings_show_boxes_polygons_and_text():
    image = Image.new("RGB", (100, 80), (0, 0, 0))
    drawn = draw_annotation(image, {"boxes": [[10, 10, 60, 50]], "labels": ["cat"], "scores": [0.9], "text": "hello"})
    assert drawn.size[0] == 100 and drawn.size[1] > 80  # text band below the picture
    assert drawn.getpixel((10, 30)) != (0, 0, 0)  # the box outline
    assert drawn.getpixel((35, 30)) == (0, 0, 0)  # inside stays untouched
    filled = draw_annotation(image, {"polygons": [[10, 10, 90, 10, 50, 70]]})
    assert filled.getpixel((50, 30)) != (0, 0, 0)


def test_predict_from_a_lora_run_folder_uses_its_adapter(tmp_path, images):

    from f2tune.predict.load import load_for_inference, resolve_source
    from f2tune.recipe import validate_recipe
    from f2tune.train.run import fit

    recipe = validate_recipe(tiny_recipe(tmp_path, adaptation={"method": "lora"}, eval={"before_fit": False}))
    run = fit(recipe).run_dir
    assert resolve_source(str(run)) == run / "export"
    model, _ = load_for_inference(str(run))
    assert type(model).__name__ == "PeftModel" and not model.training
    out = predict(str(run), images[:2], PredictRequest(), tmp_path / "from-run")
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 2

    # its last checkpoint, as it is: the final weights, which the export holds too
    last = run / "checkpoints" / "last.ckpt"
    model, _ = load_for_inference(str(last))
    assert type(model).__name__ == "PeftModel" and not model.training
    from_checkpoint = predict(str(last), images[:2], PredictRequest(), tmp_path / "from-checkpoint")
    results = [
        [json.loads(line)["result"] for line in (folder / "predictions.jsonl").read_text().splitlines()]
        for folder in (out, from_checkpoint)
    ]
    assert results[0] == results[1]


def test_the_command_line_sets_the_decoding(tiny_dir, images, tmp_path, monkeypatch):
    asked = []

    def answer(model, processor, inputs, decoding, scores):
        asked.append(decoding)
        return [Generation("a square", [], None) for _ in inputs["input_ids"]]

    monkeypatch.setattr(predict_run, "generate", answer)
    args = ["predict", str(tiny_dir), str(images[0]), "--out", str(tmp_path / "out")]
    assert main([*args, "--max-new-tokens", "7", "--num-beams", "1"]) == 0
    assert (asked[0].max_new_tokens, asked[0].num_beams) == (7, 1)
