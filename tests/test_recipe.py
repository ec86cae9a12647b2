"""Recipes: every shipped YAML validates; mistakes are named with suggestions; overrides apply."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from f2tune.errors import RecipeError
from f2tune.recipe import UniqueKeyLoader, apply_override, dump_recipe, load_recipe, validate_recipe

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
MINIMAL = {
    "model": {"name_or_path": "f2tune://tiny"},
    "data": {"train": [{"format": "shapes"}]},
    "trainer": {"max_steps": 1},
}


def test_recipes_folder_is_not_empty():
    names = {p.name for p in RECIPES}
    assert {"demo_shapes.yaml", "refcoco_lora.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_validates_and_says_how_to_launch_it(path: Path):
    recipe = load_recipe(path)
    assert recipe.trainer.run_name == path.stem
    header = path.read_text().split("\n\n")[0]
    assert "f2tune fit recipes/" in header and "Data" in header and "Expect" in header


def test_unknown_keys_are_named_with_close_suggestions():
    raw = {**MINIMAL, "trainer": {"max_step": 10, "max_steps": 1}, "lora": {"rank": 4}, "optimm": {}}
    with pytest.raises(RecipeError) as caught:
        validate_recipe(raw, source="r.yaml")
    message = str(caught.value)
    assert message.startswith("r.yaml: 3 problem(s)")
    assert "unknown key 'trainer.max_step'; did you mean 'trainer.max_steps'" in message
    assert "unknown key 'optimm'; did you mean 'optim'" in message
    known = "alpha, dropout, merge, r, target, use_dora, use_rslora"
    assert f"unknown key 'lora.rank'; known keys in 'lora': {known}" in message


def test_keys_inside_data_sources_are_checked_per_format():
    raw = {**MINIMAL, "data": {"train": [{"format": "jsonl", "pth": "x.jsonl"}]}}
    with pytest.raises(RecipeError) as caught:
        validate_recipe(raw)
    assert "missing required key 'data.train.0.path'" in str(caught.value)
    assert "unknown key 'data.train.0.pth'; did you mean 'data.train.0.path'" in str(caught.value)


def test_a_data_source_without_a_known_format_is_named_with_the_formats():
    """pydantic said "Unable to extract tag using discriminator 'format'", naming neither the source
    nor what to write."""
    sources = [{"format": "shapes"}, {"path": "x.jsonl"}, {"format": None}, {"format": "json", "path": "x.jsonl"}]
    with pytest.raises(RecipeError) as caught:
        validate_recipe({**MINIMAL, "data": {"train": sources[:1], "val": sources[1:]}})
    message = str(caught.value)
    formats = "one of: jsonl, shapes, coco_detection, refcoco, ocr, coco_captions, karpathy_captions"
    assert f"data.val.0: this data source has no 'format' key; add one saying how it is read, {formats}" in message
    assert "data.val.1: this data source has an empty 'format' key; add one" in message
    assert f"data.val.2.format: unknown format 'json'; did you mean 'jsonl'? it is {formats}" in message
    assert "discriminator" not in message


def test_wrong_types_and_missing_sections_are_named():
    with pytest.raises(RecipeError) as caught:
        validate_recipe({"model": {"name_or_path": "x"}, "trainer": {"max_steps": "ten"}})
    message = str(caught.value)
    assert "missing required key 'data'" in message
    assert "trainer.max_steps: Input should be a valid integer" in message and "'ten'" in message


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        (
            "devices",
            "two",
            "trainer.devices: Input should be a valid integer, unable to parse string as an integer; "
            "or 'auto'; or a valid list (got 'two')",
        ),
        ("num_workers", -1, "data.num_workers: Input should be greater than or equal to 0; or 'auto' (got -1)"),
    ],
)
def test_a_value_that_fits_no_alternative_is_one_problem_naming_each(key, value, problem):
    section = "trainer" if key == "devices" else "data"
    raw = {**MINIMAL, section: {**MINIMAL[section], key: value}}
    with pytest.raises(RecipeError) as caught:
        validate_recipe(raw)
    assert str(caught.value).splitlines()[1:] == [f"  - {problem}"]


@pytest.mark.parametrize(
    ("trainer", "optim", "problem"),
    [
        (
            {"max_steps": 0},
            {},
            "trainer.max_steps: 0 trains nothing: give the optimizer steps to train, or -1 to run trainer.max_epochs",
        ),
        ({"max_steps": 5, "val_check_interval": 0}, {}, "trainer.val_check_interval: Input should be greater than 0"),
        ({"max_steps": 5, "val_check_interval": 1.5}, {}, "less than or equal to 1 (got 1.5)"),
        (
            {"max_steps": 5, "val_check_interval": -1},
            {},
            "trainer.val_check_interval: Input should be greater than 0 (got -1)",
        ),
        (
            {"max_steps": 5, "val_check_interval": 0.5, "check_val_every_n_epoch": None},
            {},
            "trainer.val_check_interval is a fraction of an epoch, but trainer.check_val_every_n_epoch is null",
        ),
        ({"max_steps": 5, "run_name": ".."}, {}, "trainer.run_name: '..' is not a folder name"),
        ({"max_steps": 5, "run_name": "../escape"}, {}, "trainer.run_name: '../escape' is not a folder name"),
        ({"max_steps": 5, "run_name": ""}, {}, "trainer.run_name: '' is not a folder name"),
        ({"max_steps": 5}, {"betas": [1.5, 0.999]}, "optim.betas.0: Input should be less than 1 (got 1.5)"),
        # Lightning refused these only once the data was read
        ({"max_steps": 5, "devices": 0}, {}, "trainer.devices: 0 devices train nothing"),
        ({"max_steps": 5, "devices": []}, {}, "trainer.devices"),
        (
            {"max_steps": 100},
            {"warmup_steps": 100},
            "optim.warmup_steps is 100, but trainer.max_steps is 100: the learning rate would never reach optim.lr",
        ),
    ],
)
def test_values_that_would_train_nothing_or_crash_later_are_refused(trainer, optim, problem):
    """Each of these ran: max_steps 0 exported the starting weights as final, a validation interval
    of 0 crashed mid-fit (ZeroDivisionError), and a warmup as long as the run never reached the
    learning rate, without a word."""
    with pytest.raises(RecipeError) as caught:
        validate_recipe({**MINIMAL, "trainer": trainer, "optim": optim})
    [line] = str(caught.value).splitlines()[1:]
    assert problem in line


def test_a_license_the_hub_would_refuse_at_the_push_is_refused_with_the_recipe():
    with pytest.raises(RecipeError) as caught:
        validate_recipe({**MINIMAL, "export": {"license": "MIT License"}})
    [line] = str(caught.value).splitlines()[1:]
    assert "export.license: 'MIT License' is not a Hub license id: write it as the Hub lists them, e.g. mit" in line
    assert validate_recipe({**MINIMAL, "export": {"license": "apache-2.0"}}).export.license == "apache-2.0"


def test_an_override_whose_value_is_not_yaml_is_named(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    with pytest.raises(RecipeError, match=r"override 'trainer.max_steps=\[1': its value is not valid YAML"):
        load_recipe(path, ["trainer.max_steps=[1"])
    with pytest.raises(RecipeError, match=r"quote it for YAML inside the shell's quotes: 'trainer.run_name=\"@home\"'"):
        load_recipe(path, ["trainer.run_name=@home"])


def test_an_override_that_yaml_would_cut_at_a_comment_is_refused(tmp_path):
    """`key=What is in box #3?` trained on 'What is in box', without a word."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    with pytest.raises(RecipeError, match=r"would leave 'lr1e-4'; to keep it, .*'trainer.run_name=\"lr1e-4 #retry\"'"):
        load_recipe(path, ["trainer.run_name=lr1e-4 #retry"])
    assert load_recipe(path, ['trainer.run_name="lr1e-4 #retry"']).trainer.run_name == "lr1e-4 #retry"
    assert load_recipe(path, ["trainer.run_name=take#2"]).trainer.run_name == "take#2"  # no space: not a comment


def test_a_recipe_in_another_encoding_is_named_and_utf16_is_read(tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(yaml.safe_dump(MINIMAL).encode() + "# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(RecipeError, match=r"latin.yaml: not UTF-8 text \(invalid continuation byte at byte \d+\)"):
        load_recipe(latin)
    wide = tmp_path / "wide.yaml"  # as PowerShell's `>` writes it
    wide.write_bytes(yaml.safe_dump(MINIMAL).encode("utf-16"))
    assert load_recipe(wide).model.name_or_path == MINIMAL["model"]["name_or_path"]


def test_a_null_run_name_is_the_recipe_name(tmp_path):
    """It was the folder `runs/None`."""
    path = tmp_path / "my_recipe.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "trainer": {"max_steps": 1, "run_name": None}}))
    assert load_recipe(path).trainer.run_name == "my_recipe"


def test_a_warmup_shorter_than_the_run_and_a_fraction_of_an_epoch_are_kept():
    recipe = validate_recipe(
        {**MINIMAL, "trainer": {"max_steps": 100, "val_check_interval": 0.25}, "optim": {"warmup_steps": 99}}
    )
    assert (recipe.trainer.val_check_interval, recipe.optim.warmup_steps) == (0.25, 99)


def test_overrides_parse_yaml_values_and_reach_lists(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    recipe = load_recipe(
        path,
        ["trainer.max_steps=10", "lora.r=16", "data.train.0.num_samples=7", "adaptation.freeze.vision_stages=[0, 1]"],
    )
    assert (recipe.trainer.max_steps, recipe.lora.r, recipe.data.train[0].num_samples) == (10, 16, 7)
    assert recipe.adaptation.freeze.vision_stages == [0, 1]
    with pytest.raises(RecipeError, match="did you mean 'trainer.max_steps'"):
        load_recipe(path, ["trainer.max_stpes=3"])
    with pytest.raises(RecipeError, match="not of the form key.path=value"):
        load_recipe(path, ["trainer.max_steps"])
    with pytest.raises(RecipeError, match="not an index"):
        apply_override({"data": {"train": []}}, "data.train.3.path=x")


def test_effective_recipe_round_trips():
    recipe = validate_recipe(MINIMAL)
    assert validate_recipe(yaml.safe_load(dump_recipe(recipe))) == recipe


def test_yaml_is_parsed_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("model: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(path)


def test_yaml_errors_point_at_the_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  name_or_path: f2tune://tiny\ndata: [1, 2\n")
    with pytest.raises(RecipeError, match=r'(?s)not valid YAML: .* in ".*broken.yaml", line 3, column 7'):
        load_recipe(path)


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    """YAML keeps the last of two equal keys: the first `max_steps` was dropped without a word."""
    path = tmp_path / "twice.yaml"
    path.write_text("model:\n  name_or_path: f2tune://tiny\ntrainer:\n  max_steps: 10\n  devices: 1\n  max_steps: 5\n")
    with pytest.raises(RecipeError, match=r"(?s)found 'max_steps' a second time \(first at line 4\).*line 6"):
        load_recipe(path)


def test_yaml_merge_keys_still_let_a_key_beside_them_override():
    text = "cpu: &cpu {accelerator: cpu, max_steps: 3}\ntrainer:\n  <<: *cpu\n  max_steps: 5\n"
    assert yaml.load(text, Loader=UniqueKeyLoader)["trainer"] == {"accelerator": "cpu", "max_steps": 5}


@pytest.mark.parametrize(
    ("key", "value"), [("optim.lr", ".inf"), ("optim.lr", ".nan"), ("data.train.0.weight", ".inf")]
)
def test_infinite_and_nan_numbers_are_refused(tmp_path, key, value):
    """A source weight of `.inf` passed `gt=0` and crashed in torch's sampling."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    with pytest.raises(RecipeError, match=f"{key}: Input should be a finite number"):
        load_recipe(path, [f"{key}={value}"])


@pytest.mark.parametrize("key", ["trainer.max_steps", "data.batch_size", "optim.lr", "trainer.devices"])
def test_a_yes_or_no_where_a_number_goes_is_refused_at_its_key(tmp_path, key):
    """pydantic reads `true` as 1: `trainer.max_steps=true` trained one step without a word."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    with pytest.raises(RecipeError, match=rf"{key}: Input should be a valid .*\(got 'true'\)"):
        load_recipe(path, [f"{key}=true"])
    flags = load_recipe(path, ["trainer.compile=true", "data.group_by_length=yes"])
    assert flags.trainer.compile is True and flags.data.group_by_length is True


NESTED_YES = [
    ("trainer.devices=[true]", "trainer.devices.0"),
    ("optim.lr_scale={vision_tower: yes}", "optim.lr_scale.vision_tower"),
]


@pytest.mark.parametrize(("override", "key"), NESTED_YES)
def test_a_yes_or_no_inside_a_list_or_mapping_of_numbers_is_refused(tmp_path, override, key):
    """`trainer.devices=[true]` trained on GPU 1, a learning-rate scale of `yes` was 1.0."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    with pytest.raises(RecipeError, match=rf"{key}: Input should be a valid .*\(got 'true'\)"):
        load_recipe(path, [override])


def test_text_that_yaml_reads_as_a_number_yes_no_or_date_is_refused_saying_to_quote_it(tmp_path):
    """YAML 1.1 reads `run_name: 0755` as 493: the message showed a value never written, and not what to do."""
    path = tmp_path / "r.yaml"
    path.write_text(
        "model: {name_or_path: 'f2tune://tiny', revision: 0123}\n"
        "data: {train: [{format: jsonl, path: x.jsonl, prompt: on, name: 2024-01-01}]}\n"
        "trainer: {max_steps: 1, run_name: 0755}\n"
    )
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    message = str(caught.value)
    assert "4 problem(s)" in message
    quote = "quote the value to keep it as written, e.g."
    assert "trainer.run_name: expected text, got the number 493 (YAML reads unquoted 0755 as octal 493" in message
    assert f'{quote} run_name: "0755" (as an override, in the shell: \'trainer.run_name="0755"\')' in message
    assert "model.revision: expected text, got the number 83 (" in message
    assert "data.train.0.prompt: expected text, got the yes/no true (YAML reads unquoted yes, no, on, off" in message
    assert f'{quote} prompt: "no"' in message
    assert "data.train.0.name: expected text, got the date 2024-01-01 (" in message
    assert f'{quote} name: "2024-01-01" (as an override, in the shell: \'data.train.0.name="2024-01-01"\')' in message
    fixed = ["trainer.run_name='0755'", "model.revision='0123'", "data.train.0.prompt='on'", "data.train.0.name=d"]
    recipe = load_recipe(path, fixed)
    assert (recipe.trainer.run_name, recipe.model.revision, recipe.data.train[0].prompt) == ("0755", "0123", "on")


def test_one_sample_per_image_is_refused_in_training():
    """It trained each image's first caption alone."""
    source = {"format": "coco_captions", "path": "c.json", "image_root": "i", "one_per_image": True}
    with pytest.raises(RecipeError, match="data.train: .*one_per_image: true, which is for data.val"):
        validate_recipe({**MINIMAL, "data": {"train": [source]}})
    assert validate_recipe({**MINIMAL, "data": {**MINIMAL["data"], "val": [source]}}).data.val[0].one_per_image


def test_captions_are_scored_per_image_in_validation_and_test_unless_told():
    """Caption metrics score one prediction per image against all its captions; a sample per
    caption (the default everywhere before) scored each image five times, against one caption each."""
    source = {"format": "coco_captions", "path": "c.json", "image_root": "i"}
    data = {**MINIMAL["data"], "val": [source], "test": [source, {**source, "one_per_image": False}]}
    recipe = validate_recipe({**MINIMAL, "data": data})
    assert [s.one_per_image for s in recipe.data.val + recipe.data.test] == [True, True, False]
    assert not validate_recipe({**MINIMAL, "data": {"train": [source]}}).data.train[0].one_per_image


def test_a_leading_tilde_in_a_path_is_the_home_folder(monkeypatch, tmp_path):
    """No shell expands `~` in YAML: left as it is, `output_dir: ~/runs` makes a folder named `~`."""
    monkeypatch.setenv("HOME", str(tmp_path))
    recipe = validate_recipe(
        {
            **MINIMAL,
            "data": {
                "train": [{"format": "jsonl", "path": "~/data/train.jsonl"}],
                "val": [{"format": "refcoco", "path": "~/i.json", "refs": "~/refs.json", "image_root": "~/images"}],
            },
            "trainer": {"max_steps": 1, "output_dir": "~/runs"},
            "export": {"dir": "~/exports/x"},
        }
    )
    assert recipe.data.train[0].path == str(tmp_path / "data" / "train.jsonl")
    assert recipe.data.val[0].refs == str(tmp_path / "refs.json")
    assert (recipe.trainer.output_dir, recipe.export.dir) == (str(tmp_path / "runs"), str(tmp_path / "exports" / "x"))
    assert recipe.model.name_or_path == "f2tune://tiny"  # not a path: unchanged


def test_cache_image_features_off_is_read_as_yaml_writes_it(tmp_path):
    """YAML reads a bare `off` as false: `trainer.cache_image_features=off` was refused ("got False")."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    assert load_recipe(path, ["trainer.cache_image_features=off"]).trainer.cache_image_features == "off"
    with pytest.raises(RecipeError, match="cache_image_features"):
        load_recipe(path, ["trainer.cache_image_features=on"])  # YAML's true: neither auto nor off


def test_a_lora_target_that_is_no_regex_is_refused_with_the_recipe():
    """It passed --print-config and stopped the fit only once the data was read."""
    with pytest.raises(RecipeError, match=r"lora.target: '\(unclosed' is neither a preset .* nor a valid regex"):
        validate_recipe({**MINIMAL, "lora": {"target": "(unclosed"}})
