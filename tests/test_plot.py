"""plot.py: PNG written atomically at the right size, data drawn where it maps, log axes, gaps."""
import math
import os
import runpy
import sys

import numpy as np
import pytest
from PIL import Image

import plot


def _draw(tmp_path, series, **kw):
    path = str(tmp_path / "chart.png")
    plot.line_chart(series, path, **kw)
    return np.asarray(Image.open(path).convert("RGB"))


def _mask(img, colour):
    return (img == np.array(colour, dtype=np.uint8)).all(axis=-1)     # (H, W) bool


def _line_row(img, colour):
    """The pixel row holding most of `colour`, and how many pixels of it that row has."""
    counts = _mask(img, colour).sum(axis=1)
    return int(counts.argmax()), int(counts.max())


def test_png_written_atomically_at_requested_size(tmp_path):
    path = str(tmp_path / "sub" / "chart.png")
    for _ in range(2):                                              # the second call overwrites
        out = plot.line_chart({"a": ([0, 1, 2], [3, 1, 2])}, path, title="t", xlabel="x",
                              ylabel="y", width=500, height=300)
    assert out == path
    with Image.open(path) as im:
        assert im.format == "PNG" and im.height == 300 and im.width > 500   # legend widens it
    assert os.listdir(tmp_path / "sub") == ["chart.png"]            # no .tmp left behind


def test_each_series_drawn_at_its_height(tmp_path):
    ys = {"low": 1.5, "mid": 2.5, "high": 4.5}
    img = _draw(tmp_path, {k: ([0, 10], [y, y]) for k, y in ys.items()}, markers=False)
    rows = {}
    for i, k in enumerate(ys):
        rows[k], n = _line_row(img, plot.PALETTE[i])
        assert n > 400                                              # spans most of the plot width
    assert rows["high"] < rows["mid"] < rows["low"]                 # larger y is higher up
    assert abs((rows["mid"] - rows["high"]) - 2 * (rows["low"] - rows["mid"])) <= 3   # linear


def test_log_axis_spaces_decades_evenly(tmp_path):
    series = {str(y): ([1, 10, 100], [y, y, y]) for y in (3, 30, 300)}
    img = _draw(tmp_path, series, xlog=True, ylog=True, markers=False)
    r = [_line_row(img, plot.PALETTE[i])[0] for i in range(3)]
    assert r[0] > r[1] > r[2] and abs((r[0] - r[1]) - (r[1] - r[2])) <= 3


def test_log_axis_rejects_non_positive(tmp_path):
    with pytest.raises(ValueError, match="y axis is log"):
        plot.line_chart({"a": ([1, 2], [0, 5])}, str(tmp_path / "a.png"), ylog=True)
    with pytest.raises(ValueError, match="x axis is log"):
        plot.line_chart({"a": ([-1, 2], [1, 5])}, str(tmp_path / "b.png"), xlog=True)
    assert not os.listdir(tmp_path)


def test_empty_series_raises(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plot.line_chart({}, str(tmp_path / "a.png"))
    assert not os.listdir(tmp_path)


def test_gap_breaks_the_line(tmp_path):
    ys = [2.0, 2, 2, 2, None, None, math.nan, 2, 2, 2, 2]          # a flat line with a hole
    img = _draw(tmp_path, {"a": (list(range(11)), ys), "b": ([0, 10], [1, 3])}, markers=False)
    row, _ = _line_row(img, plot.PALETTE[0])
    cols = np.flatnonzero(_mask(img, plot.PALETTE[0])[row - 2:row + 3].any(axis=0))
    assert np.diff(cols).max() > 100                                # x = 3..7 is left blank


def test_single_point_and_flat_series_are_visible(tmp_path):
    img = _draw(tmp_path, {"dot": ([3], [7])}, markers=False)       # a lone point gets its dot
    assert _mask(img[:, :600], plot.PALETTE[0]).sum() >= 9          # left of the legend
    img = _draw(tmp_path, {"flat": ([0, 1, 2], [5, 5, 5])})
    assert _line_row(img, plot.PALETTE[0])[1] > 400


@pytest.mark.parametrize("lo,hi", [(0, 37), (-0.013, 0.002), (16.2, 31.8), (1e-6, 3e-6), (0, 1e7)])
def test_linear_ticks_are_nice(lo, hi):
    ticks, labels = plot._ticks(lo, hi, log=False)
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    assert 3 <= len(ticks) <= 7 and len(set(labels)) == len(labels)
    assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-6
    assert lo - 1e-12 <= ticks[0] and ticks[-1] <= hi + 1e-12
    assert np.allclose(np.diff(ticks), step)


def test_log_ticks_are_powers():
    assert plot._ticks(1, 1e6, log=True)[0] == [10.0 ** e for e in range(7)]
    assert plot._ticks(1, 1e6, log=True)[1][-1] == "1e6"
    assert plot._ticks(200, 9000, log=True)[0] == [256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0]


def test_demo_runs(tmp_path, monkeypatch):
    out = str(tmp_path / "demo.png")
    monkeypatch.setattr(sys, "argv", ["plot.py", out])
    runpy.run_path(plot.__file__, run_name="__main__")
    with Image.open(out) as im:
        assert im.height == 440 and im.width > 720
