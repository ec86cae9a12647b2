"""Error messages as the command line prints them."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors import SafetensorError
from torch._utils import ExceptionWrapper

from f2tune.errors import DataError, RecipeError, first_few, safetensors_os_errors, user_message


def test_an_error_re_raised_from_a_loader_worker_prints_as_raised():
    """torch re-raises a worker's exception with the worker's traceback as its message."""
    try:
        raise DataError("a.jsonl:2: cannot read image b.png\n(a hint on its own line)")
    except DataError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(DataError) as caught:
        wrapped.reraise()
    assert "Traceback" in str(caught.value)
    assert user_message(caught.value) == "a.jsonl:2: cannot read image b.png\n(a hint on its own line)"
    assert user_message(RecipeError("r.yaml: 1 problem(s)")) == "r.yaml: 1 problem(s)"


def test_first_few_names_the_start_of_a_long_list():
    assert first_few(["a", "b"]) == "a, b"
    assert first_few([str(n) for n in range(8)], "; ", shown=3) == "0; 1; 2 and 5 more"


def test_safetensors_write_errors_become_the_oserror_they_report():
    """A SafetensorError is no OSError: the command line's handler of full or forbidden disks missed it."""
    with pytest.raises(OSError) as raised, safetensors_os_errors(Path("out")):
        raise SafetensorError("Error while serializing: I/O error: Permission denied (os error 13)")
    assert (raised.value.errno, raised.value.strerror, raised.value.filename) == (13, "Permission denied", "out")
    with pytest.raises(SafetensorError, match="invalid header"), safetensors_os_errors(Path("out")):
        raise SafetensorError("Error while deserializing header: invalid header")  # no disk's: as it was
