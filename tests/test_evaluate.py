"""evaluate.py: the row cache, the ordering checks, the report, and its bad input."""
import json
import os
from dataclasses import asdict, replace

import pytest
import torch
from PIL import Image

import cache
import evaluate
import plot
from config import SCALES, result_fields



def fake_summary(label, compressor, rate, psnr, first=None, by_position=None, omega="random"):
    cfg = replace(SCALES["tiny"], compressor=compressor, rate=rate, omega=omega)
    return {"label": label, "compressor": compressor, "rate": rate, "omega": omega, "psnr": psnr, "ssim": 0.5,
            "lpips": None, "psnr_first": psnr if first is None else first, "psnr_last": psnr,
            "psnr_by_position": by_position or [psnr] * cfg.latent_frames, "memory_tokens": 32,
            "train_seconds": 60.0, "steps": cfg.steps, "data_split": "synthetic: test", "paper": None,
            "config": asdict(cfg)}


def test_run_dir_keys_on_what_changes_the_result():
    cfg = SCALES["tiny"]
    same = cache.run_dir(cfg, "r")
    assert cache.run_dir(replace(cfg, threads=1, device="cuda", out="x", eval_every=7), "r") == same
    for change in ({"steps": 10}, {"lr": 1e-3}, {"seed": 1}, {"rate": "4x4x2"}, {"data": "../v"},
                   {"min_first": 1}, {"min_away": 2}):
        assert cache.run_dir(replace(cfg, **change), "r") != same, change
    # a field added after results were cached counts only away from its default: old caches stay valid
    assert "min_first" not in result_fields(cfg) and "min_first" in result_fields(replace(cfg, min_first=1))


def test_orderings_follow_the_figures():
    T = SCALES["tiny"].latent_frames
    rows = [fake_summary("Large Patchifier 4x4x2", "large_patchifier", "4x4x2", 13.0),
            fake_summary("Only LR 4x4x2", "only_lr", "4x4x2", 14.0),
            fake_summary("Without LR 4x4x2", "without_lr", "4x4x2", 12.0),
            fake_summary("Proposed 4x4x2", "pfp", "4x4x2", 15.0),
            fake_summary("Proposed 2x2x2", "pfp", "2x2x2", 18.0),
            fake_summary("Proposed 2x2x1", "pfp", "2x2x1", 17.0),
            # the cheat: the first third at 10 dB, the last two frames at 13 dB
            fake_summary(evaluate.OMEGA_LAST.label, "pfp", "4x4x2", 11.0, first=10.0,
                         by_position=[10.0] * (T - 2) + [13.0, 13.0], omega="last")]
    got = {claim: holds for claim, holds, _ in evaluate.orderings(rows)}
    assert got["Proposed 4x4x2 > Only LR 4x4x2"] and got["Proposed 4x4x2 > Without LR 4x4x2"]
    assert got["Only LR 4x4x2 > Large Patchifier 4x4x2"] and not got["Without LR 4x4x2 > Large Patchifier 4x4x2"]
    assert got["Proposed 2x2x2 > Proposed 4x4x2"] and not got["Proposed 2x2x1 > Proposed 2x2x2"]
    omega = [holds for claim, holds in got.items() if "frames" in claim]
    assert omega == [True, True]                   # random keeps early frames; last cheats (3 dB gap)
    rows[-1]["psnr_by_position"] = [10.0] * T      # no gap: the cheat is not shown
    assert [h for c, h, _ in evaluate.orderings(rows) if "cheat" in c] == [False]


def test_markdown_has_every_row_and_na_for_missing_lpips():
    rows = [fake_summary("Large Patchifier 4x4x2", "large_patchifier", "4x4x2", 13.0),
            fake_summary("Proposed 4x4x2", "pfp", "4x4x2", 15.5)]
    rows[1]["paper"] = (17.41, 0.596, 0.171)
    text = evaluate.markdown(rows, "Synthetic")
    assert "| Proposed 4x4x2 | 32 | 15.50 |" in text and "+2.50" in text and "+4.48" in text
    assert "| n/a |" in text and text.count("\n| ") == 3          # header and two rows


def test_linear_references_in_closed_form():
    cfg = replace(SCALES["tiny"], rate="4x4x2")
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(4, 8, 3, 8, 8, generator=g) * 2 - 1                 # (B, T/2, 3, H/4, W/4)
    blocky = coarse.repeat_interleave(2, 1).repeat_interleave(4, 3).repeat_interleave(4, 4)  # (4, 16, 3, 32, 32)
    refs = evaluate.linear_references(blocky, blocky, cfg)
    assert refs["only_lr"] > 90                  # constant over every pooling block: pooling keeps it all
    # 4 videos x 8 x 2 x 2 = 128 blocks span at most 127 directions: a 128-number code keeps them
    assert refs["large_patchifier"] > 60
    noise = torch.rand(4, 16, 3, 32, 32, generator=g) * 2 - 1
    refs = evaluate.linear_references(blocky, noise, cfg)                   # fitted on other data
    assert refs["only_lr"] < 15 and refs["large_patchifier"] < 15


def test_cached_rows_are_read_not_retrained(tmp_path, monkeypatch):
    cfg = replace(SCALES["tiny"], steps=5)
    out = cache.run_dir(cfg, str(tmp_path))
    os.makedirs(out)
    json.dump(fake_summary("x", "pfp", "2x2x2", 12.3), open(os.path.join(out, "summary.json"), "w"))
    open(os.path.join(out, "ckpt.pt"), "w").close()
    monkeypatch.setattr(evaluate, "train", lambda *a, **k: pytest.fail("a cached row was retrained"))
    [summary] = evaluate.run_rows([(evaluate.ROWS[4], cfg)], {"synthetic": None}, str(tmp_path))
    assert summary["psnr"] == 12.3 and summary["label"] == "Proposed 2x2x2" and summary["out"] == out


def test_labelled_png_adds_a_label_margin(tmp_path):
    rows = [torch.zeros(3, 3, 8, 8), torch.ones(3, 3, 8, 8)]
    path = str(tmp_path / "grid.png")
    plot.labelled_png(rows, ["truth", "row"], path, scale=2, margin=100)
    image = Image.open(path)
    assert image.size == (100 + 3 * (8 + 2) * 2, 2 * (8 + 2) * 2)
    assert os.listdir(tmp_path) == ["grid.png"]                  # no temporary file left behind


@pytest.mark.parametrize("args, message", [(["--shard", "3"], "must be i/n"), (["--shard", "4/4"], "must be i/n"),
                                           (["--real", "/no/such/folder"], "is not a folder"),
                                           (["--steps", "x"], "invalid int value"),
                                           (["--curves", "/no/such/run"], "holds no metrics.jsonl"),
                                           (["--tables", "real", "--real", ""], "needs --real FOLDER")])
def test_bad_input_is_one_line(args, message, cli):
    code, _, err = cli("evaluate.py", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_no_network_baselines_in_closed_form():
    """The mean frame is perfect on a still video and the pooled video on one constant over every
    pooling block; on noise both are far from it, and the pooled one is the LR branch's view."""
    from train_pfp import no_network_baselines
    cfg = replace(SCALES["tiny"], rate="2x2x2")
    g = torch.Generator().manual_seed(0)
    still = (torch.rand(2, 1, 3, 32, 32, generator=g) * 2 - 1).expand(2, 16, 3, 32, 32)
    assert no_network_baselines(still, cfg)["mean_frame"] > 90 > no_network_baselines(still, cfg)["pooled"]
    coarse = torch.rand(2, 8, 3, 16, 16, generator=g) * 2 - 1
    blocky = coarse.repeat_interleave(2, 1).repeat_interleave(2, 3).repeat_interleave(2, 4)   # (2, 16, 3, 32, 32)
    floor = no_network_baselines(blocky, cfg)
    assert floor["pooled"] > 90 and floor["mean_frame"] < 15
    noise = torch.rand(2, 16, 3, 32, 32, generator=g) * 2 - 1
    assert max(no_network_baselines(noise, cfg).values()) < 15


def test_the_table_shows_the_no_network_floors_beside_each_row():
    rows = [fake_summary("Proposed 4x4x2", "pfp", "4x4x2", 15.5)]
    text = evaluate.markdown(rows, "Synthetic", floors={"4x4x2": {"mean_frame": 14.38, "pooled": 15.43}})
    assert "| Proposed 4x4x2 | 32 | 15.50 | 14.38 / 15.43 |" in text


def test_the_table_shows_the_latent_ceiling_beside_each_row():
    """A row in the PCA latent shows the ceiling its latent sets; a lossless row says exact."""
    rows = [fake_summary("Only LR 4x4x2", "only_lr", "4x4x2", 13.0), fake_summary("Proposed 4x4x2", "pfp", "4x4x2", 15.5)]
    rows[1]["latent_ceiling_psnr"] = 20.71
    text = evaluate.markdown(rows, "Synthetic")
    assert "| Only LR 4x4x2 | 32 | 13.00 | n/a | exact |" in text and "| Proposed 4x4x2 | 32 | 15.50 | n/a | 20.71 |" in text


def test_rows_from_a_base_start_from_it_and_are_cached_apart(tmp_path, monkeypatch):
    cfg, calls = replace(SCALES["tiny"], steps=5), []

    def fake_train_ar(c, out, init, **kwargs):          # the base: full history, from scratch
        calls.append(("base", c.compressor, c.rate, c.steps, init))
        os.makedirs(out, exist_ok=True)
        json.dump({"stage": 2}, open(os.path.join(out, "summary.json"), "w"))
        open(os.path.join(out, "ckpt.pt"), "w").close()
        return {}

    def fake_train(c, out, data, init="none", **kwargs):
        calls.append(("row", init))
        return fake_summary("x", c.compressor, c.rate, 12.0)

    monkeypatch.setattr(evaluate, "train_ar", fake_train_ar)
    monkeypatch.setattr(evaluate, "train", fake_train)
    base = evaluate.base_model(cfg, str(tmp_path), steps=7)
    assert evaluate.base_model(cfg, str(tmp_path), steps=7) == base      # cached: trained once
    assert calls == [("base", "only_lr", "1x1x1", 7, "none")] and os.path.isfile(base)
    [row] = evaluate.run_rows([(evaluate.ROWS[4], cfg)], {"synthetic": None}, str(tmp_path), {"synthetic": base})
    assert calls[-1] == ("row", base)
    assert row["out"] == cache.run_dir(cfg, str(tmp_path), base) != cache.run_dir(cfg, str(tmp_path))
    assert cache.run_dir(cfg, str(tmp_path), "other/ckpt.pt") != row["out"]   # keyed by the base it starts from
