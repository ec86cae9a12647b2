"""What f2tune prints: transformers' save bars stay out of it, download bars stay on."""

from __future__ import annotations

from transformers.utils import logging as transformers_logging

from f2tune.log import no_save_bars
from f2tune.testing.tiny import save_tiny


def test_saving_a_model_draws_no_bar_and_leaves_bars_as_they_were(tmp_path, capsys):
    assert transformers_logging.is_progress_bar_enabled()
    save_tiny(tmp_path / "model")
    assert "Writing model shards" not in capsys.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()  # downloads still show their progress


def test_bars_turned_off_by_the_user_stay_off(tmp_path):
    transformers_logging.disable_progress_bar()
    try:
        with no_save_bars():
            pass
        assert not transformers_logging.is_progress_bar_enabled()
    finally:
        transformers_logging.enable_progress_bar()
