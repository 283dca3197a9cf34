"""Nothing lost: checkpoints, --resume after SIGKILL and SIGTERM, the NaN guard, determinism."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from config import SCALES, check
from train_pfp import train
from conftest import HANG

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--dim", "32", "--depth", "1", "--heads", "2", "--hr_channels", "8", "--history", "8", "--batch", "4",
         "--train_videos", "8", "--val_videos", "2", "--sample_steps", "2", "--threads", "1", "--warmup", "5",
         "--log_every", "1", "--eval_every", "100000", "--ckpt_every", "10"]


def command(out, *extra):
    return [sys.executable, "train_pfp.py", *FLAGS, *extra, "--out", str(out)]


def saved_step(out) -> int:
    path = os.path.join(out, "ckpt.pt")
    return torch.load(path, weights_only=True)["step"] if os.path.isfile(path) else 0


def start_and_signal(out, sig, steps: int, after: int) -> tuple:
    """Start a run of `steps` steps, send `sig` once a checkpoint at step >= after exists -> (exit code, stderr)."""
    run = subprocess.Popen(command(out, "--steps", str(steps)), cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.time() + HANG
    while saved_step(out) < after and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    run.send_signal(sig)
    _, stderr = run.communicate(timeout=HANG)
    return run.returncode, stderr


def weights(out) -> dict:
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)
    return {f"{part}.{k}": v for part in ("dit", "compressor", "dit_ema", "compressor_ema") for k, v in ckpt[part].items()}


def test_sigkill_midway_then_resume_ends_with_the_uninterrupted_weights(tmp_path, cli):
    steps = 80
    assert cli("train_pfp.py", *command(tmp_path / "whole", "--steps", str(steps))[2:])[0] == 0
    code, _ = start_and_signal(tmp_path / "cut", signal.SIGKILL, steps, after=20)
    assert code == -signal.SIGKILL                                   # it died mid-run ...
    stopped_at = saved_step(tmp_path / "cut")
    assert 20 <= stopped_at < steps and not list((tmp_path / "cut").glob("*.tmp*"))   # ... leaving no half file
    done = subprocess.run(command(tmp_path / "cut", "--steps", str(steps), "--resume"), cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed at step {stopped_at}" in done.stdout
    whole, resumed = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert max((whole[k] - resumed[k]).abs().max().item() for k in whole) == 0.0
    logged = [json.loads(line)["step"] for line in open(tmp_path / "cut" / "metrics.jsonl") if '"loss"' in line]
    assert logged == list(range(1, steps + 1))                      # every step once, none twice


def test_sigterm_saves_the_current_step_and_says_how_to_resume(tmp_path):
    code, stderr = start_and_signal(tmp_path, signal.SIGTERM, 400, after=10)
    last = stderr.strip().splitlines()[-1]
    assert code == 130 and "Traceback" not in stderr
    assert last.startswith("interrupted at step") and "--resume" in last
    assert int(last.split()[3]) == saved_step(tmp_path)            # the step it stopped at, not the last multiple of 10


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, cli):
    assert cli("train_pfp.py", *command(tmp_path, "--steps", "10")[2:])[0] == 0
    code, _, err = cli("train_pfp.py", *command(tmp_path, "--steps", "10", "--rate", "2x2x1", "--resume")[2:])
    assert code == 2 and "not a checkpoint of this run" in err and "rate" in err


def test_nan_guard_skips_bad_steps_stops_and_keeps_finite_weights(tmp_path, cli):
    code, out, err = cli("train_pfp.py", *command(tmp_path, "--steps", "40", "--lr", "1e30", "--warmup", "1", "--ckpt_every", "1")[2:])
    assert code == 2 and "5 steps in a row were skipped" in err and "lower --lr" in err
    assert "holds the last good weights (step 4)" in err
    assert "step skipped" in out
    # the guard checks the update, not only the loss: the kept weights are still the initial ones
    assert max(w.abs().max().item() for w in weights(tmp_path).values()) < 10


def test_same_seed_same_loss_curve(tmp_path):
    cfg = check(replace(SCALES["tiny"], dim=32, depth=1, heads=2, hr_channels=8, history=8, steps=15, batch=4,
                        train_videos=8, val_videos=2, sample_steps=2, log_every=1, threads=1))
    curves = []
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        train(replace(cfg, seed=seed), str(tmp_path / name), quiet=True)
        curves.append([json.loads(line)["loss"] for line in open(tmp_path / name / "metrics.jsonl") if '"loss"' in line])
    assert curves[0] == curves[1] and curves[0] != curves[2]


def test_the_nan_guard_predicts_the_update_adamw_makes():
    """The guard's prediction of the update (no copy of the weights) is the update AdamW then makes,
    with weight decay, warmup and several steps of moments behind it."""
    from training import adamw_update_norm
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.SiLU(), torch.nn.Linear(8, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2, betas=(0.9, 0.99), weight_decay=0.1)
    for _ in range(4):
        model(torch.randn(16, 6)).pow(2).mean().backward()
        predicted = adamw_update_norm(optimizer)
        before = [p.detach().clone() for p in model.parameters()]
        optimizer.step()
        optimizer.zero_grad()
        moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)]).norm()
        assert predicted.item() == pytest.approx(moved.item(), rel=1e-4) and moved > 0
