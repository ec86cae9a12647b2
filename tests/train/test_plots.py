"""Loss curves: read from every CSV log version (resumed runs) and drawn to a PNG."""

from __future__ import annotations

from PIL import Image

from f2tune.train.plots import plot_loss_curves, read_curves


def write_csv(folder, rows: str) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("epoch,step,train/loss,val/loss\n" + rows)


def test_curves_join_the_versions_of_a_resumed_run(tmp_path):
    write_csv(tmp_path / "version_0", "0,1,5.0,\n0,2,4.0,\n0,2,,4.5\n")
    write_csv(tmp_path / "version_1", "0,3,3.0,\n0,4,2.0,\n0,4,,2.5\n")
    curves = read_curves(tmp_path)
    assert curves["train/loss"] == [(1, 5.0), (2, 4.0), (3, 3.0), (4, 2.0)]
    assert curves["val/loss"] == [(2, 4.5), (4, 2.5)]
    png = plot_loss_curves(tmp_path, tmp_path / "loss.png")
    assert Image.open(png).size[0] > 300


def test_no_logs_no_picture(tmp_path):
    assert plot_loss_curves(tmp_path, tmp_path / "loss.png") is None
    assert not (tmp_path / "loss.png").exists()
