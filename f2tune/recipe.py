"""Recipe files: read YAML safely, apply `a.b=c` overrides, validate, explain every mistake at once."""

from __future__ import annotations

import datetime
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from f2tune.config import Recipe
from f2tune.errors import RecipeError, missing_file


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: YAML keeps the last one
    silently, so a second `max_steps:` under `trainer:` replaced the first, and a second `data:`
    the whole section before it (the error then said `data.train` was missing)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: keys given beside it override its own
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):  # the base constructor names that mistake
                continue
            if key in first:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found {key!r} a second time (first at line {first[key].line + 1}); keep one of them",
                    key_node.start_mark,
                )
            first[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file, apply `key.path=value` overrides and return the validated `Recipe`.

    Relative paths inside the recipe stay relative to the working directory; `trainer.run_name`
    defaults to the recipe's file name so that `--resume` finds the same run again.
    """
    path = Path(path)
    if problem := missing_file(path, "recipe"):
        raise RecipeError(problem)
    try:
        # bytes, with a name: YAML reads UTF-8 and UTF-16 (by their byte order mark), refuses other
        # encodings with a YAMLError, and its errors point at the file, line, column
        with path.open("rb") as stream:
            raw = yaml.load(stream, Loader=UniqueKeyLoader) or {}
    except yaml.reader.ReaderError as err:  # bytes that are no UTF-8 (or UTF-16 with its byte order mark)
        raise RecipeError(f"{path}: not UTF-8 text ({err.reason} at byte {err.position}): save it as UTF-8") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections (model, data, trainer, ...)")
    for override in overrides or []:
        apply_override(raw, override)
    raw.setdefault("trainer", {})
    if isinstance(raw["trainer"], dict) and raw["trainer"].get("run_name") is None:  # unset, or null
        raw["trainer"]["run_name"] = path.stem
    return validate_recipe(raw, source=str(path))


def validate_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate a recipe mapping; on failure raise one `RecipeError` listing every problem."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        by_key: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for error in err.errors():  # a value that fits no alternative of `int | "auto"` fails each
            by_key.setdefault(tuple(_walk(Recipe, error["loc"])[1]), []).append(error)
        lines = [_describe(errors) for errors in by_key.values()]
        raise RecipeError(f"{source}: {len(lines)} problem(s)\n" + "\n".join(f"  - {m}" for m in lines)) from None


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set `a.b.c=value` in a nested mapping; the value is parsed as YAML (`10`, `true`, `[0, 1]`)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise RecipeError(f"override {override!r} is not of the form key.path=value (e.g. trainer.max_steps=10)")
    quoting = f"quote it for YAML inside the shell's quotes: '{key}=\"{text}\"'"
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError as err:
        problem = str(err).splitlines()[0]
        raise RecipeError(f"override {override!r}: its value is not valid YAML ({problem}); {quoting}") from None
    if "#" in text and text.count("#") > yaml.safe_dump(value).count("#"):
        raise RecipeError(
            f"override {override!r}: YAML reads ' #' and what follows as a comment, which would leave {value!r}; "
            f"to keep it, {quoting}"
        )
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise RecipeError(f"override {key}: '{part}' is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise RecipeError(f"override {key}: '{'.'.join(parts[:i])}' is a value, not a section")


def dump_recipe(recipe: Recipe) -> str:
    """The effective recipe as YAML (defaults filled in), as saved beside every run."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def _describe(errors: list[dict[str, Any]]) -> str:
    """One line for the pydantic errors of one key: the dotted key, what is wrong (each alternative
    of a union the value fits none of), and close keys if misspelled."""
    error = errors[0]
    loc = error["loc"]
    classes, shown = _walk(Recipe, loc)
    key = ".".join(shown) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        known = sorted({name for cls in classes for name in cls.model_fields})
        parent = "".join(f"{p}." for p in shown[:-1])
        close = _did_you_mean(shown[-1], known, prefix=parent)
        hint = f"; {close}" if close else f"; known keys in '{parent.rstrip('.') or 'the recipe'}': {', '.join(known)}"
        return f"unknown key '{key}'{hint}"
    if kind == "missing":
        return f"missing required key '{key}'"
    if kind in ("union_tag_not_found", "union_tag_invalid"):  # a data source's `format:`
        return _format_problem(key, error, classes)
    if kind == "value_error":  # a check across keys, whose message names them
        message = error["msg"].removeprefix("Value error, ")
        return f"{key}: {message}" if shown else message
    given = error.get("input")
    if kind == "string_type" and isinstance(given, (bool, int, float, datetime.date)):
        return _unquoted(key, shown, given)
    # each alternative's reason once (`int > 0 | float > 0` fail alike), the first one whole
    reasons = dict.fromkeys(e["msg"].removeprefix("Input should be ") for e in errors)
    message = "; or ".join(reasons)
    if errors[0]["msg"].startswith("Input should be "):
        message = "Input should be " + message
    return f"{key}: {message} (got {given!r})" if not isinstance(given, dict) else f"{key}: {message}"


def _unquoted(key: str, shown: list[str], given: bool | int | float | datetime.date) -> str:
    """Text that YAML 1.1 read as something else: `run_name: 0755` arrives as 493 (octal), `on` as
    true, `2024-01-01` as a date; pydantic's "Input should be a valid string (got 493)" shows a value
    the user never wrote and not what to do."""
    if isinstance(given, bool):
        read, example = f"the yes/no {str(given).lower()} (YAML reads unquoted yes, no, on, off as yes/no)", "no"
    elif isinstance(given, int):
        read, example = f"the number {given} (YAML reads unquoted 0755 as octal 493, 0x1F as 31)", "0755"
    elif isinstance(given, float):
        read, example = f"the number {given} (YAML reads an unquoted 1.5 or .inf as a number)", str(given)
    else:
        read, example = f"the date {given} (YAML reads an unquoted 2024-01-01 as a date)", str(given)
    name = shown[-1].split(".")[0] if shown else key  # `train.0`: the key of a list as YAML writes it
    return (
        f"{key}: expected text, got {read}; quote the value to keep it as written, e.g. {name}: "
        f'"{example}" (as an override, in the shell: \'{key}="{example}"\')'
    )


def _format_problem(key: str, error: dict[str, Any], classes: list[type[BaseModel]]) -> str:
    """A data source without `format:` or with one f2tune does not read: pydantic says "Unable to
    extract tag using discriminator 'format'", which names neither the key nor what to write."""
    formats = [tag for tag in map(_tag_of, classes) if tag]
    known = f"one of: {', '.join(formats)}"
    source = error["input"] if isinstance(error["input"], dict) else {}
    given = source.get("format")
    if given is None:
        missing = "an empty 'format' key" if "format" in source else "no 'format' key"
        return f"{key}: this data source has {missing}; add one saying how it is read, {known}"
    close = _did_you_mean(str(given), formats)
    return f"{key}.format: unknown format {given!r}; {close + ' ' if close else ''}it is {known}"


def _did_you_mean(word: str, choices: list[str], prefix: str = "") -> str:
    """`did you mean 'a' or 'b'?` (each choice after `prefix`) for the choices close to `word`, or ""."""
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(prefix + c) for c in close)}?" if close else ""


def _walk(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[type[BaseModel]], list[str]]:
    """Follow a pydantic error location through the schema.

    Returns the model classes that own the last key (for suggestions) and the key path as the user
    wrote it: list indices stay, discriminator tags that pydantic inserts (`jsonl`) are dropped, and
    so are the union members it names below a plain value (`devices.literal['auto']`).
    """
    current: list[type[BaseModel]] = [root]
    shown: list[str] = []
    in_value = False  # below a field of plain-value alternatives (`int | Literal["auto"]`)
    for part in loc:
        if isinstance(part, int):
            shown[-1:] = [f"{shown[-1]}.{part}"] if shown else [str(part)]
            continue
        owners = [cls for cls in current if part in cls.model_fields]
        if owners and not in_value:
            shown.append(part)
            annotation = owners[0].model_fields[part].annotation
            models = _models_in(annotation)
            current = models or owners
            in_value = not models and typing.get_origin(annotation) in (typing.Union, types.UnionType)
        elif in_value:
            continue
        else:
            tagged = [cls for cls in current if _tag_of(cls) == part]
            if tagged:
                current = tagged
            else:
                shown.append(part)
    return current, shown


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Model classes reachable through Optional / list / Union / Annotated wrappers."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None:
        return []
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    found: list[type[BaseModel]] = []
    if origin in (typing.Union, types.UnionType, list, tuple, dict):
        for arg in typing.get_args(annotation):
            found.extend(_models_in(arg))
    return found


def _tag_of(cls: type[BaseModel]) -> str | None:
    """The `format` literal of a data-source class (the discriminator pydantic puts in locations)."""
    field = cls.model_fields.get("format")
    if field is None:
        return None
    args = typing.get_args(field.annotation)
    return str(args[0]) if args else None
