"""Bad input on the command line: one line naming the problem and the fix, exit code 2, no traceback."""
import os
import subprocess
import sys

import pytest
import torch
from conftest import HANG

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=HANG)


def write_mp4(path, frames, size=40):
    import imageio.v2 as imageio
    import numpy as np
    rng = np.random.default_rng(0)
    imageio.mimwrite(path, [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(frames)], fps=10)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    (base / "empty").mkdir()
    (base / "short").mkdir()
    write_mp4(str(base / "short" / "clip.mp4"), frames=6)
    (base / "corrupt").mkdir()
    (base / "corrupt" / "broken.mp4").write_bytes(os.urandom(2000))
    (base / "truncated").mkdir()
    write_mp4(str(base / "whole.mp4"), frames=40)
    whole = (base / "whole.mp4").read_bytes()
    (base / "truncated" / "cut.mp4").write_bytes(whole[:len(whole) // 2])   # a download that stopped halfway
    (base / "text").mkdir()
    (base / "text" / "notes.mp4").write_text("these are notes, not a video\n" * 50)
    return base


CASES = {
    "unknown scale": (["--scale", "huge"], "invalid choice: 'huge'"),
    "unknown variant": (["--compressor", "big"], "invalid choice: 'big'"),
    "rate malformed": (["--rate", "4x4"], "HxWxT"),
    "not a number": (["--steps", "many"], "invalid int value"),
    "missing folder": (["--data", "/no/such/folder"], "does not exist"),
    "empty folder": (["--data", "{empty}"], "holds no"),
    "video shorter than history": (["--data", "{short}"], "frames"),
    "corrupt file": (["--data", "{corrupt}"], "broken.mp4"),
    "truncated mp4": (["--data", "{truncated}"], "cannot decode video file"),
    "not a video": (["--data", "{text}"], "cannot decode video file"),
    "flag out of range": (["--ema", "1.5"], "--ema must be in [0, 1), got 1.5"),
    "zero heads": (["--heads", "0"], "--heads must be a positive integer, got 0"),
    "count below 1": (["--steps", "0"], "--steps must be a positive integer"),
    "batch not divisible": (["--accum", "3"], "--batch 8 must be divisible by processes x --accum = 1 x 3"),
    "unknown dtype": (["--dtype", "fp16"], "invalid choice: 'fp16'"),
    "not a yes/no value": (["--compile", "maybe"], "'maybe' is not a yes/no value: write true or false"),
    "unknown device": (["--device", "tpu"], "unknown --device 'tpu': choose cpu, cuda or cuda:N"),
    "negative learning rate for the DiT": (["--dit_lr_scale", "-1"], "--dit_lr_scale must be above 0, got -1.0"),
}
if not torch.cuda.is_available():
    CASES["no GPU for --device cuda"] = (["--device", "cuda"], "no CUDA GPU")


@pytest.mark.parametrize("case", CASES)
def test_train_pfp_bad_input_is_one_line_exit_2(case, folders, tmp_path, cli):
    args, expected = CASES[case]
    args = [a.format(**{name: folders / name for name in ("empty", "short", "corrupt", "truncated", "text")}) for a in args]
    code, _, err = cli("train_pfp.py", *args, "--out", tmp_path / "run")
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], err


def test_sample_with_missing_or_broken_checkpoint(tmp_path, cli):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    for ckpt, expected in [(tmp_path / "nope.pt", "not found"), (broken, "could not be read")]:
        code, _, err = cli("sample.py", "--ckpt", ckpt, "--retrieve")
        assert code == 2 and expected in err.strip() and len(err.strip().splitlines()) == 1


def test_a_failed_sample_leaves_no_empty_out_folder(tmp_path, cli):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    code, _, _ = cli("sample.py", "--ckpt", broken, "--retrieve", "--out", tmp_path / "new" / "out")
    assert code == 2 and not (tmp_path / "new" / "out").exists()


def test_sample_with_a_fifo_for_a_checkpoint_does_not_wait(tmp_path, cli):
    os.mkfifo(tmp_path / "ckpt.pt")
    code, _, err = cli("sample.py", "--ckpt", tmp_path / "ckpt.pt", "--retrieve")
    assert code == 2 and "is not a regular file" in err and len(err.strip().splitlines()) == 1


def test_train_then_sample_end_to_end(tmp_path, cli):
    """A few steps of the real command: every promised output exists and says what it should."""
    import json
    out = tmp_path / "run"
    result = run("train_pfp.py", "--steps", "4", "--eval_every", "2", "--log_every", "2", "--train_videos", "8",
                 "--val_videos", "2", "--dim", "32", "--depth", "1", "--hr_channels", "4", "--sample_steps", "2",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    for key in ["psnr", "ssim", "psnr_first", "psnr_middle", "psnr_last", "ssim_first", "wall_seconds",
                "steps", "memory_tokens"]:
        assert key in summary
    assert summary["memory_tokens"] == 128 and summary["steps"] == 4 and summary["config"]["dim"] == 32
    assert json.loads((out / "config.json").read_text())["dim"] == 32
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [2, 4] and any("val" in r for r in rows)
    assert (out / "retrieval.png").stat().st_size > 0

    # sample.py needs nothing but the checkpoint: the config travels inside it
    code, out_text, err = cli("sample.py", "--ckpt", out / "ckpt.pt", "--retrieve", "--frames", "0", "15")
    assert code == 0, err[-2000:]
    assert "frame   0" in out_text and "frame  15" in out_text
    assert (out / "retrieve.png").exists() and (out / "retrieve.gif").exists()
    code, _, err = cli("sample.py", "--ckpt", out / "ckpt.pt", "--retrieve", "--frames", "99")
    assert code == 2 and "--frames" in err


def test_sample_with_a_checkpoint_whose_weights_are_another_variant(tmp_path, cli):
    """A checkpoint edited or mixed up so that its config names another compressor than its weights."""
    from dataclasses import replace
    from config import SCALES
    from compressor import Compressor
    from dit import DiT
    from training import checkpoint_state
    cfg = replace(SCALES["tiny"], dim=32, heads=2, depth=1, hr_channels=4)
    dit, phi = DiT(cfg), Compressor(cfg)
    state = checkpoint_state(replace(cfg, compressor="large_patchifier"), 10, dit, phi, dit, phi, stage=1)
    torch.save(state, tmp_path / "mixed.pt")
    code, _, err = cli("sample.py", "--ckpt", tmp_path / "mixed.pt", "--retrieve")
    assert code == 2 and "does not match its own config" in err and len(err.strip().splitlines()) == 1


def test_every_flag_explains_itself_in_help(cli):
    from dataclasses import fields
    from config import Config, field_comments
    comments = field_comments()
    assert all(len(comments.get(f.name, "")) > 10 for f in fields(Config))
    text = cli("train_pfp.py", "--help")[1]
    assert "global batch: processes x --accum micro-batches (presets: tiny 8, small 32, paper 1)" in " ".join(text.split())


def test_evaluate_negative_steps_is_one_line_exit_2(cli):
    code, _, err = cli("evaluate.py", "--steps", "-3")
    assert code == 2 and err.strip() == "error: --steps must be 0 (the default) or a positive integer, got -3"


def test_evaluate_refuses_more_threads_than_the_machine_takes(cli):
    code, _, err = cli("evaluate.py", "--threads", "100000")
    assert code == 2 and "--threads must be 0" in err and len(err.strip().splitlines()) == 1


def test_plot_help_writes_no_file(tmp_path):
    result = run(os.path.join(ROOT, "plot.py"), "--help", cwd=tmp_path)
    assert result.returncode == 0 and "usage" in result.stdout and not list(tmp_path.iterdir())


def test_a_flag_newer_than_the_checkpoint_is_applied_not_dropped():
    """A stage-2 run starts from its checkpoint's config; a field added to Config after that
    checkpoint was saved takes its default, and a flag that sets it is applied, not ignored."""
    import argparse
    from dataclasses import asdict
    from config import SCALES, add_config_flags, config_from_args
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    old = {**asdict(SCALES["tiny"]), "captions": True}
    del old["memory_captions"], old["dit_lr_scale"]                  # saved before these fields existed
    cfg = config_from_args(parser.parse_args(["--memory_captions", "true"]), base=old)
    assert cfg.memory_captions and cfg.captions and cfg.dit_lr_scale == 1.0
    assert not config_from_args(parser.parse_args([]), base=old).memory_captions
