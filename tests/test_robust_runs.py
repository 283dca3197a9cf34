"""Nothing lost, part two: checkpoints that cannot run code, run folders that are never clobbered,
one writer per folder, a NaN guard that tells the truth, and one line instead of a traceback.

Most cases call a script's main() in this process (the `cli` fixture of conftest.py, through
config.run_main, as `python X.py` does), which is much faster than a subprocess; signals need a
real process."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

import sample
import train_ar
import train_pfp
from checkpoint import write_atomically
from config import SCALES, Config, ConfigError, check, run_main
from train_pfp import train
from conftest import HANG

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--dim", "32", "--depth", "1", "--heads", "2", "--hr_channels", "8", "--history", "8", "--batch", "4",
         "--train_videos", "8", "--val_videos", "2", "--sample_steps", "2", "--threads", "1", "--warmup", "2",
         "--eval_every", "100000", "--log_every", "1"]
UNWRITABLE = "/proc/pfp-mini-cannot-write-here"          # not a folder anyone can create, root included


def one_line(err: str) -> str:
    """The error line (tqdm's bars also write to stderr); there must be exactly one and no traceback."""
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(lines) == 1, err[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny stage-1 run: its folder."""
    out = tmp_path_factory.mktemp("robust") / "run"
    cfg = check(replace(SCALES["tiny"], dim=32, depth=1, heads=2, hr_channels=8, history=8, steps=6, batch=4,
                        train_videos=8, val_videos=2, sample_steps=2, threads=1, warmup=2, ckpt_every=3,
                        eval_every=100000, log_every=1))
    train(cfg, str(out), quiet=True)
    return out


def copy_of(run, out):
    """A copy of a run folder at out -> out."""
    out.mkdir()
    for name, blob in snapshot(run).items():
        (out / name).write_bytes(blob)
    return out


def snapshot(folder) -> dict:
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


# --- checkpoints that cannot run code ---------------------------------------------------------
class CreatesAFile:
    """Unpickling this calls open(path, "w"): what a malicious checkpoint could do instead."""
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_checkpoint_from_a_bigger_machine_loads(tmp_path, finished, cli):
    """--threads is the writer's machine, not the model: a run made with more threads than this
    machine allows still samples and starts stage 2 here."""
    ckpt = torch.load(finished / "ckpt.pt", weights_only=True)
    ckpt["config"]["threads"] = 64 * (os.cpu_count() or 1)
    torch.save(ckpt, tmp_path / "ckpt.pt")
    code, _, err = cli(sample, "--ckpt", tmp_path / "ckpt.pt", "--retrieve", "--out", tmp_path / "sampled")
    assert code == 0, err[-500:]
    code, _, err = cli(train_ar, "--init", tmp_path / "ckpt.pt", "--steps", "1", "--out", tmp_path / "ar")
    assert code == 0, err[-500:]


class CallsABlockedModule:
    """Unpickling this calls os.getpid: a global of a module torch blocks outright (its message differs)."""
    def __reduce__(self):
        return os.getpid, ()


def test_a_checkpoint_naming_a_blocked_module_is_refused_unread(tmp_path, finished, cli):
    evil = torch.load(finished / "ckpt.pt", weights_only=True)
    evil["config"]["payload"] = CallsABlockedModule()
    torch.save(evil, tmp_path / "ckpt.pt")
    code, _, err = cli(sample, "--ckpt", tmp_path / "ckpt.pt", "--retrieve")
    assert code == 2 and "refused unread" in one_line(err), err[-500:]


def test_a_checkpoint_that_would_run_code_is_refused_unread(tmp_path, finished, cli):
    marker = tmp_path / "created-by-the-checkpoint"
    evil = torch.load(finished / "ckpt.pt", weights_only=True)
    evil["config"]["payload"] = CreatesAFile(str(marker))
    torch.save(evil, tmp_path / "ckpt.pt")
    cases = [(sample, "--ckpt", tmp_path / "ckpt.pt", "--retrieve"),
             (train_ar, "--init", tmp_path / "ckpt.pt", "--steps", "1", "--out", tmp_path / "ar"),
             (train_pfp, *SMALL, "--steps", "6", "--out", tmp_path, "--resume")]
    for module, *argv in cases:
        code, _, err = cli(module, *argv)
        assert code == 2 and "refused unread" in one_line(err), (module.__name__, err[-500:])
        assert not marker.exists(), module.__name__
    assert not (tmp_path / "ar").exists() and not (tmp_path / "config.json").exists()


def test_a_checkpoint_without_the_weights_is_one_line(tmp_path, finished, cli):
    ckpt = torch.load(finished / "ckpt.pt", weights_only=True)
    del ckpt["dit_ema"]
    torch.save(ckpt, tmp_path / "partial.pt")
    for module, *argv in [(train_ar, "--init", tmp_path / "partial.pt", "--out", tmp_path / "ar"),
                          (sample, "--ckpt", tmp_path / "partial.pt", "--generate")]:
        code, _, err = cli(module, *argv)
        assert code == 2 and "lacks what train_pfp.py/train_ar.py write" in one_line(err)


@pytest.mark.parametrize("field,value", [("rate", 5), ("dim", 32.0), ("device", None), ("compile", 1)])
def test_a_config_field_of_the_wrong_type_is_one_line(tmp_path, finished, cli, field, value):
    ckpt = torch.load(finished / "ckpt.pt", weights_only=True)
    ckpt["config"][field] = value
    torch.save(ckpt, tmp_path / "odd.pt")
    code, _, err = cli(sample, "--ckpt", tmp_path / "odd.pt", "--retrieve", "--out", tmp_path / "out")
    assert code == 2 and f"{field} is {value!r}" in one_line(err), err[-500:]


def test_weights_that_are_not_weights_are_one_line(tmp_path, finished, cli):
    ckpt = torch.load(finished / "ckpt.pt", weights_only=True)
    ckpt["dit_ema"] = [1, 2, 3]
    torch.save(ckpt, tmp_path / "odd.pt")
    code, _, err = cli(sample, "--ckpt", tmp_path / "odd.pt", "--retrieve", "--out", tmp_path / "out")
    assert code == 2 and "its dit_ema is not a set of weights" in one_line(err), err[-500:]


@pytest.mark.parametrize("damage", ["no step", "step as text", "no schedule", "a tensor of another shape"])
def test_resume_from_a_damaged_checkpoint_is_one_line_and_keeps_the_log(tmp_path, cli, damage):
    run = tmp_path / "run"
    argv = [*SMALL, "--steps", "6", "--ckpt_every", "3", "--out", run]
    assert cli(train_pfp, *argv)[0] == 0
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    if damage == "no step":
        del ckpt["step"]
    elif damage == "step as text":
        ckpt["step"] = "3"
    elif damage == "no schedule":
        ckpt["step"] = 3
        del ckpt["schedule"]
    else:
        ckpt["step"] = 3
        name = next(iter(ckpt["dit"]))
        ckpt["dit"][name] = torch.zeros(3, 3, 3)
    torch.save(ckpt, run / "ckpt.pt")
    log = (run / "metrics.jsonl").read_text()
    code, _, err = cli(train_pfp, *argv, "--resume")
    assert code == 2 and "--resume" in one_line(err), err[-500:]
    assert (run / "metrics.jsonl").read_text() == log


# --- run folders that are never clobbered --------------------------------------------------------
def test_a_new_run_into_a_finished_run_is_refused_and_changes_nothing(finished, cli):
    before = snapshot(finished)
    code, _, err = cli(train_pfp, *SMALL, "--steps", "6", "--out", finished)
    line = one_line(err)
    assert code == 2 and "already holds a run" in line and "--resume" in line and "--overwrite" in line
    code, _, err = cli(train_pfp, *SMALL, "--steps", "6", "--out", finished, "--overwrite", "--data", "/no/such")
    assert code == 2 and "does not exist" in one_line(err)           # a run that fails to start writes nothing
    code, _, err = cli(train_pfp, *SMALL, "--steps", "6", "--out", finished, "--resume", "--overwrite")
    assert code == 2 and "pass one of them" in one_line(err)
    assert snapshot(finished) == before


def test_a_signal_a_library_swallows_still_stops_the_run_before_it_writes(tmp_path, finished, cli, monkeypatch):
    """SIGTERM lands inside a library that catches KeyboardInterrupt (as a lazy import once did):
    the run goes on to its first write, stops there, and the old run it would overwrite is kept."""
    import training
    out = copy_of(finished, tmp_path / "copy")
    before = snapshot(out)
    generate = training.synthetic_videos

    def swallowing(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except KeyboardInterrupt:
            pass
        return generate(*args, **kwargs)
    monkeypatch.setattr(training, "synthetic_videos", swallowing)
    code, _, err = cli(train_pfp, *SMALL, "--steps", "4", "--out", out, "--overwrite")
    assert code == 130 and err.strip().splitlines()[-1].startswith("interrupted") and "Traceback" not in err, err[-500:]
    assert snapshot(out) == before


def test_a_checkpoint_of_nan_weights_says_so(tmp_path, finished, cli):
    ckpt = torch.load(finished / "ckpt.pt", weights_only=True)
    ckpt["dit_ema"] = {k: torch.full_like(w, float("nan")) if w.is_floating_point() else w
                       for k, w in ckpt["dit_ema"].items()}
    torch.save(ckpt, tmp_path / "nan.pt")
    code, _, err = cli(sample, "--ckpt", tmp_path / "nan.pt", "--retrieve", "--out", tmp_path / "out")
    assert code == 0 and "holds weights that are not finite" in err, err[-500:]


def test_temporary_files_of_a_killed_writer_are_removed_and_a_live_ones_kept(tmp_path, finished):
    from checkpoint import RunFolder
    out = copy_of(finished, tmp_path / "copy")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / f"ckpt.tmp-{gone.pid}-0123abcd.pt").write_bytes(b"half a checkpoint")
        (out / f"next_chunk.tmp-{gone.pid}-89abcdef.png").write_bytes(b"half a picture")
        (out / f"ckpt.tmp-{alive.pid}-fedcba98.pt").write_bytes(b"being written")
        with RunFolder(str(out), resuming=True):
            pass
        left = sorted(p.name for p in out.iterdir())
        assert left == sorted([*snapshot(finished), f"ckpt.tmp-{alive.pid}-fedcba98.pt"])
    finally:
        alive.kill()
        alive.wait()


def test_overwrite_is_all_or_nothing(tmp_path, finished, cli, monkeypatch):
    """One file of the old run cannot be removed (as under chattr +i): the old run stays whole."""
    out = copy_of(finished, tmp_path / "copy")
    before = snapshot(out)
    rename = os.rename

    def refuse_the_log(src, dst):
        if os.path.basename(src) == "metrics.jsonl" and ".overwritten" in str(dst):
            raise PermissionError(1, "Operation not permitted", str(src))
        return rename(src, dst)
    monkeypatch.setattr(os, "rename", refuse_the_log)
    code, _, err = cli(train_pfp, *SMALL, "--steps", "4", "--out", out, "--overwrite", "--seed", "1")
    assert code == 2 and "the old run is kept whole" in one_line(err), err[-500:]
    assert snapshot(out) == before


def test_overwrite_replaces_the_run_and_resume_needs_a_checkpoint(tmp_path, finished, cli):
    out = copy_of(finished, tmp_path / "copy")
    code, _, _ = cli(train_pfp, *SMALL, "--steps", "4", "--out", out, "--overwrite", "--seed", "1")
    assert code in (0, None)
    assert json.load(open(out / "summary.json"))["steps"] == 4 and not (out / ".lock").exists()
    code, _, err = cli(train_pfp, *SMALL, "--steps", "4", "--out", tmp_path / "empty", "--resume")
    assert code == 2 and "holds no ckpt.pt" in one_line(err) and not (tmp_path / "empty").exists()


# --- one writer per run folder -----------------------------------------------------------------
def test_a_live_lock_refuses_and_a_stale_lock_is_taken_over(tmp_path, cli):
    out = tmp_path / "run"
    out.mkdir()
    from checkpoint import process_start
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(f"{alive.pid} {process_start(alive.pid)}")
        code, _, err = cli(train_pfp, *SMALL, "--steps", "2", "--out", out)
        assert code == 2 and f"another run (pid {alive.pid})" in one_line(err)
        assert os.listdir(out) == [".lock"]                      # nothing written, the other run's lock kept
    finally:
        alive.kill()
        alive.wait()
    code, _, _ = cli(train_pfp, *SMALL, "--steps", "2", "--out", out)   # its writer is gone: stale
    assert code in (0, None) and (out / "summary.json").exists() and not (out / ".lock").exists()
    reused = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])   # the pid now names another
    try:                                                          # live Python process, started later: stale too
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / ".lock").write_text(f"{reused.pid} {process_start(reused.pid) - 1}")
        code, _, _ = cli(train_pfp, *SMALL, "--steps", "2", "--out", tmp_path / "other")
        assert code in (0, None) and not (tmp_path / "other" / ".lock").exists()
    finally:
        reused.kill()
        reused.wait()


def test_temporary_files_are_unique_and_a_full_disk_keeps_the_old_file(tmp_path):
    path, names = tmp_path / "ckpt.pt", []
    write_atomically(str(path), lambda tmp: (names.append(tmp), open(tmp, "w").write("old")))
    write_atomically(str(path), lambda tmp: (names.append(tmp), open(tmp, "w").write("new")))
    assert names[0] != names[1] and str(os.getpid()) in names[0] and path.read_text() == "new"

    def full_disk(tmp):
        open(tmp, "w").write("half")
        raise OSError(28, "No space left on device")
    with pytest.raises(ConfigError, match="No space left on device.*previous version is kept"):
        write_atomically(str(path), full_disk)
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["ckpt.pt"]


# --- the NaN guard tells the truth ---------------------------------------------------------------
def test_nan_guard_without_a_checkpoint_does_not_claim_one(tmp_path, cli):
    code, _, err = cli(train_pfp, *SMALL, "--steps", "20", "--lr", "1e30", "--warmup", "1", "--ckpt_every", "100",
                    "--out", tmp_path / "run")
    line = one_line(err)
    assert code == 2 and "no checkpoint was written yet" in line and "holds the last good" not in line


@pytest.mark.parametrize("flag,value", [("--t_mean", "nan"), ("--pos_bias", "inf"), ("--weight_decay", "inf"),
                                        ("--lr", "-inf"), ("--ema", "nan")])
def test_float_flags_reject_nan_and_inf_when_parsed(tmp_path, flag, value, cli):
    code, _, err = cli(train_pfp, f"{flag}={value}", "--out", tmp_path / "run")
    assert code == 2 and "not a finite number" in one_line(err) and not (tmp_path / "run").exists()


# --- one line instead of a traceback ----------------------------------------------------------------
def test_an_out_that_is_a_file_or_cannot_be_written(tmp_path, finished, cli):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    for out, words in [(a_file, "is a file"), (UNWRITABLE, "cannot be written")]:
        for module, *argv in [(train_pfp, *SMALL, "--steps", "2"), (train_ar, *SMALL, "--init", "none", "--steps", "2"),
                              (sample, "--ckpt", finished / "ckpt.pt", "--retrieve")]:
            code, _, err = cli(module, *argv, "--out", out)
            assert code == 2 and words in one_line(err), (module.__name__, out, err[-300:])
    assert a_file.read_text() == "keep me"


def test_resume_drops_corrupt_lines_of_metrics_with_a_warning(tmp_path, cli):
    out = tmp_path / "run"
    assert cli(train_pfp, *SMALL, "--steps", "6", "--ckpt_every", "3", "--out", out)[0] == 0
    lines = open(out / "metrics.jsonl").read().splitlines(keepends=True)
    open(out / "metrics.jsonl", "w").writelines(lines[:2] + ["{not json\n", "\x00\x01garbage\n"] + lines[2:])
    code, _, err = cli(train_pfp, *SMALL, "--steps", "6", "--ckpt_every", "3", "--out", out, "--resume")
    assert code in (0, None) and "2 unreadable line(s) dropped" in err and "Traceback" not in err
    steps = [json.loads(line)["step"] for line in open(out / "metrics.jsonl") if '"loss"' in line]
    assert steps == list(range(1, 7))


def test_seeds_out_of_range_and_frames_too_small_for_ssim(tmp_path, finished, cli):
    cases = [(sample, "--ckpt", finished / "ckpt.pt", "--retrieve", "--noise_seed", str(2 ** 64)),
             (sample, "--ckpt", finished / "ckpt.pt", "--retrieve", "--seed", "-1"),
             (train_pfp, "--seed", str(2 ** 64)),
             (train_pfp, "--height", "8", "--width", "8")]
    for module, *argv in cases:
        code, _, err = cli(module, *argv, "--out", tmp_path / "x")
        assert code == 2 and ("2**63" in one_line(err) or "SSIM" in one_line(err)), argv
    assert not (tmp_path / "x").exists()


# --- sizes checked before allocating -------------------------------------------------------------
@pytest.mark.parametrize("argv", [["--batch", str(10 ** 9)], ["--height", "100000", "--width", "100000"],
                                  ["--history", str(2 * 10 ** 7)], ["--train_videos", str(10 ** 9)]])
def test_sizes_that_cannot_fit_are_refused_before_allocating(tmp_path, argv, cli):
    start = time.time()
    code, _, err = cli(train_pfp, *argv, "--out", tmp_path / "run")
    line = one_line(err)
    assert code == 2 and "needs about" in line and "this machine's" in line and time.time() - start < 30
    assert not (tmp_path / "run").exists()


def test_too_many_chunks_are_refused_before_generating(tmp_path, finished, cli):
    code, _, err = cli(sample, "--ckpt", finished / "ckpt.pt", "--generate", "--chunks", str(10 ** 9),
                    "--out", tmp_path)
    assert code == 2 and "--chunks 1000000000" in one_line(err) and "needs about" in one_line(err)


# --- Ctrl-C and SIGTERM outside the training loop --------------------------------------------------
def signalled(argv, after: float) -> subprocess.CompletedProcess:
    """Start a script, wait for its first word on stderr (its progress bar: past the imports, at
    work), then `after` seconds more, and send SIGTERM. Waiting for the bar, not a fixed time,
    keeps a loaded machine from sending it while Python is still importing torch."""
    run = subprocess.Popen([sys.executable, *map(str, argv)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    first = run.stderr.read(1)
    time.sleep(after)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=HANG)
    return subprocess.CompletedProcess(argv, run.returncode, out, first + err)


def test_sigterm_while_generating_data_or_sampling_is_one_line_130(tmp_path, finished):
    data = signalled(["train_pfp.py", "--train_videos", "20000", "--out", tmp_path / "run"], after=2)
    assert data.returncode == 130 and "Traceback" not in data.stderr and "interrupted" in data.stderr
    assert not (tmp_path / "run").exists()                       # it had written nothing, and leaves nothing
    sampling = signalled(["sample.py", "--ckpt", finished / "ckpt.pt", "--generate", "--chunks", "500",
                          "--out", tmp_path], after=2)
    assert sampling.returncode == 130 and "Traceback" not in sampling.stderr and "interrupted" in sampling.stderr


def test_a_video_too_short_for_the_checkpoint_names_a_fix_sample_accepts(tmp_path, finished, cli):
    import imageio
    import numpy as np
    imageio.v2.mimwrite(tmp_path / "short.mp4", np.zeros((6, 32, 32, 3), np.uint8), fps=8)
    code, _, err = cli(sample, "--ckpt", finished / "ckpt.pt", "--retrieve", "--video", tmp_path / "short.mp4",
                    "--out", tmp_path)
    line = one_line(err)
    assert code == 2 and "fewer than the 8 a clip needs" in line and "--history" not in line, line


def test_captions_stories_and_threads_are_one_line(tmp_path, finished, cli):
    cases = [((train_ar, *SMALL, "--init", "none", "--captions", "true", "--out", tmp_path / "a"),
              "--captions true needs a world with captions: --data storyboard"),
             ((sample, "--ckpt", finished / "ckpt.pt", "--generate", "--story", "0-8: red stripes, blue disc",
               "--out", tmp_path), "was trained without captions"),
             ((sample, "--ckpt", finished / "ckpt.pt", "--retrieve", "--story", "0-8: red", "--out", tmp_path),
              "--story goes with --generate"),
             ((train_pfp, "--threads", "100000", "--out", tmp_path / "b"), "4 per core of this machine")]
    for (module, *argv), words in cases:
        code, _, err = cli(module, *argv)
        assert code == 2 and words in one_line(err), (argv, err[-300:])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("error,words", [(MemoryError(), "out of memory: ask for less"),
                                         (OSError(28, "No space left on device", "runs/x/metrics.jsonl"),
                                          "No space left on device: runs/x/metrics.jsonl; files written before it are kept")])
def test_running_out_of_memory_or_disk_mid_run_is_one_line(capsys, error, words):
    def main():
        raise error
    with pytest.raises(SystemExit) as done:
        run_main(main)
    assert done.value.code == 2 and words in one_line(capsys.readouterr().err)


def test_fresh_cases_found_by_a_sweep(tmp_path, finished, cli):
    """Cases a sweep of new bad inputs found: each one line, exit 2, nothing left behind."""
    import evaluate
    import footprint
    import storyboard
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    (tmp_path / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    cases = [((sample, "--ckpt", tmp_path / "tensor.pt", "--retrieve"), "not a checkpoint of train_pfp.py/train_ar.py"),
             ((sample, "--ckpt", finished / "ckpt.pt", "--generate", "--frames", "0", "99"), "--frames goes with --retrieve"),
             ((sample, "--ckpt", finished / "ckpt.pt", "--retrieve", "--chunks", "3"), "go with --generate"),
             ((storyboard, "--stories", "0", "--out", tmp_path / "sb"), "--stories must be a positive integer"),
             ((storyboard, "--seed=-1", "--out", tmp_path / "sb"), "2**63"),
             ((storyboard, "--size", "1000000", "--out", tmp_path / "sb"), "more than half of this machine's"),
             ((storyboard, "--stories", "1", "--out", tmp_path / "picture.png"), "is a file, not a folder"),
             ((evaluate, "--cut_back", tmp_path, "--stories", "1", "--results", tmp_path / "r"), "--stories must be 2 or more"),
             ((footprint, "--height", "4000000", "--width", "4000000"), "needs about")]
    for (module, *argv), words in cases:
        code, _, err = cli(module, *argv)
        assert code == 2 and words in one_line(err), (module.__name__, argv, err[-300:])
    assert not (tmp_path / "sb").exists()
    from captions import parse_story
    with pytest.raises(ConfigError, match="is not a text file"):
        parse_story(str(tmp_path / "picture.png"), 8)
    (tmp_path / "story.txt").write_bytes("\ufeff0-4: red stripes, blue disc\r\n4-8: green dots, white cross\r\n".encode())
    assert parse_story(str(tmp_path / "story.txt"), 8).shape == (8, 8)           # a byte-order mark and CRLF are fine


def test_resuming_a_finished_run_logs_its_final_evaluation_once(tmp_path, finished, cli):
    out = copy_of(finished, tmp_path / "copy")
    flags = ["--dim", "32", "--depth", "1", "--heads", "2", "--hr_channels", "8", "--history", "8", "--steps", "6",
             "--batch", "4", "--train_videos", "8", "--val_videos", "2", "--sample_steps", "2", "--threads", "1",
             "--warmup", "2", "--ckpt_every", "3", "--eval_every", "100000", "--log_every", "1"]
    assert cli(train_pfp, *flags, "--out", out, "--resume")[0] == 0
    assert sum('"val"' in line for line in open(out / "metrics.jsonl")) == 1
    longer = [("9" if previous == "--steps" else value) for previous, value in zip([""] + flags, flags)]
    code, _, err = cli(train_pfp, *longer, "--out", out, "--resume")
    assert code == 2 and "a finished run cannot be extended" in one_line(err) and "--overwrite" in one_line(err)


def test_resuming_a_checkpoint_whose_optimizer_has_another_layout_is_one_line(tmp_path):
    """A checkpoint whose optimizer has one parameter group where the run has two cannot be
    resumed exactly: one line saying what to do, not a traceback."""
    from dit import DiT
    from compressor import Compressor
    from training import checkpoint_state, make_optimizer, resume
    cfg = Config(depth=1)
    dit, phi = DiT(cfg), Compressor(cfg)
    one_group = torch.optim.AdamW([*dit.parameters(), *phi.parameters()])
    optimizer, schedule = make_optimizer(dit, phi, cfg)
    torch.save(checkpoint_state(cfg, 5, dit, phi, dit, phi, stage=1, optimizer=one_group.state_dict(),
                                schedule=schedule.state_dict()), tmp_path / "ckpt.pt")
    models = {"dit": dit, "compressor": phi, "dit_ema": dit, "compressor_ema": phi}
    with pytest.raises(ConfigError, match="weights, optimizer and schedule.*--init.*--overwrite"):
        resume(str(tmp_path), cfg, 1, models, optimizer, schedule, str(tmp_path / "metrics.jsonl"))
