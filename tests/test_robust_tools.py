"""Bad input to the tools around training (bench.py, evaluate.py, recall.py, data.py, plot.py):
one line on stderr and exit code 2, or for Ctrl-C/SIGTERM one line and exit code 130; never a
traceback, and nothing already on disk is lost.

    python -m pytest tests/test_robust_tools.py -q

Scripts run as subprocesses where the whole path matters (argument parsing to exit code); the
other checks call main() in this process (conftest.py's cli, through config.run_main, which is what
`python X.py` runs).
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import imageio
import numpy as np
import pytest
import torch

import bench
import data
import cache
import evaluate
import plot
from config import Config, ConfigError
from plot import line_chart
from conftest import HANG

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def script(*args, cwd=ROOT, timeout=HANG):
    return subprocess.run([sys.executable, os.path.join(ROOT, args[0]), *args[1:]], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def in_process(cli, module, *argv):
    """`python module.py argv...` in this process (conftest.py's cli) -> (exit code, the one line on stderr)."""
    code, _, err = cli(module, *argv)
    return code, one_line(err)


def unwritable_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):                                # root writes anyway
        pytest.skip("running as root: chmod does not stop writes")
    return folder


def write_mp4(path, frames, side=48):
    video = (np.arange(frames)[:, None, None, None] * 5 % 256 + np.zeros((frames, side, side, 3))).astype(np.uint8)
    imageio.v2.mimwrite(path, video, fps=8)


# --- 1. an output folder that is a file or cannot be written: refused before any work ---------------
def test_bench_out_is_a_file_fails_before_benchmarking(tmp_path):
    (tmp_path / "results").write_text("a file")
    done = script("bench.py", "--out", str(tmp_path / "results"))
    assert done.returncode == 2 and "bench on" not in done.stdout
    assert one_line(done.stderr) == f"error: --out {tmp_path / 'results'} is a file, not a folder: choose a folder"
    assert (tmp_path / "results").read_text() == "a file"


def test_evaluate_results_is_a_file_fails_before_training(tmp_path):
    (tmp_path / "results").write_text("a file")
    done = script("evaluate.py", "--quick", "--real", "", "--results", str(tmp_path / "results"),
                  "--runs", str(tmp_path / "runs"))
    assert done.returncode == 2 and "--results" in one_line(done.stderr) and "is a file" in done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("module, flag", [(bench, "--out"), (evaluate, "--results"), (evaluate, "--runs")])
def test_unwritable_output_folder_is_one_line(tmp_path, monkeypatch, cli, module, flag):
    folder = unwritable_folder(tmp_path)
    monkeypatch.chdir(tmp_path)                                   # the other folders' defaults land here
    code, line = in_process(cli, module, flag, folder / "out")
    assert code == 2 and f"{flag} {folder / 'out'} cannot be written" in line


# --- 2. bench.py's own flags are checked at parse time --------------------------------------------
def test_bench_ratio_zero_fails_at_once():
    start = time.time()
    done = script("bench.py", "--ratio", "0", "0")
    assert done.returncode == 2 and "bench on" not in done.stdout
    assert one_line(done.stderr).startswith("error: --ratio 0: history lengths must be positive multiples of 2")
    assert time.time() - start < 60                               # the import, not 141 s of timing


@pytest.mark.parametrize("args, message", [
    (["--ratio", "256", "16"], "--ratio 256 16: SHORT must be below LONG"),
    (["--ratio", "16", "16"], "--ratio 16 16: SHORT must be below LONG"),
    (["--ratio", "15", "256"], "--ratio 15: history lengths must be positive multiples of 2"),
    (["--ratio", "-16", "256"], "--ratio -16: history lengths must be positive multiples of 2"),
    (["--frames", "8", "9"], "--frames 9: history lengths must be positive multiples of 2"),
    (["--frames", "0"], "--frames 0: history lengths must be positive multiples of 2"),
    (["--steps", "0"], "--steps must be a positive integer, got 0"),
    (["--repeats", "-1"], "--repeats must be a positive integer, got -1"),
    (["--device", "tpu"], "unknown --device 'tpu'"),
    (["--ratio", "16"], "argument --ratio: expected 2 arguments"),
])
def test_bench_bad_flags_are_one_line(args, message, cli, tmp_path):
    code, line = in_process(cli, bench, *args, "--out", tmp_path / "out")
    assert code == 2 and message in line
    assert not (tmp_path / "out").exists()                        # checked before anything is made


@pytest.mark.parametrize("args, message", [
    (["--object_share", "nan"], "argument --object_share: 'nan' is not a finite number"),
    (["--objects", "--object_share", "1.5"], "--object_share 1.5 must lie in [0, 1]"),
    (["--device", "tpu"], "unknown --device 'tpu'"),
    (["--threads", "-2"], "--threads must be 0 (the default) or a positive integer, got -2"),
])
def test_evaluate_bad_flags_are_one_line(args, message, cli, tmp_path):
    code, line = in_process(cli, evaluate, *args, "--results", tmp_path / "r")
    assert code == 2 and message in line


def test_evaluate_tables_synthetic_ignores_a_missing_default_real_folder(monkeypatch, tmp_path):
    """--real is only the real table's: --tables synthetic must not fail on it."""
    class Reached(Exception):
        pass

    def load_videos(cfg):
        raise Reached
    monkeypatch.chdir(tmp_path)                                   # ../shared/videos does not exist from here
    monkeypatch.setattr(evaluate, "load_videos", load_videos)
    monkeypatch.setattr(sys, "argv", ["evaluate.py", "--tables", "synthetic", "--steps", "1"])
    with pytest.raises(Reached):
        evaluate.main()


# --- 3, 4. the video cache: a damaged entry is rebuilt; a folder that cannot be written is skipped ---
def test_two_clips_of_one_name_size_and_time_never_share_a_cache_entry(tmp_path):
    """Two folders, each with a clip.avi of the same size and modification time but other frames."""
    import imageio.v2 as imageio
    for folder, seed in (("one", 0), ("two", 1)):
        (tmp_path / folder).mkdir()
        rng = np.random.default_rng(seed)
        frames = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(8)]
        imageio.mimwrite(tmp_path / folder / "clip.avi", frames, fps=10, codec="rawvideo", pixelformat="bgr24")
        os.utime(tmp_path / folder / "clip.avi", ns=(10**18, 10**18))
    a, b = tmp_path / "one" / "clip.avi", tmp_path / "two" / "clip.avi"
    assert a.stat().st_size == b.stat().st_size and a.read_bytes() != b.read_bytes()
    cache = str(tmp_path / "cache")
    first, second = (data.cached_video_thwc_uint8(str(p), 16, 1, cache) for p in (a, b))
    assert not np.array_equal(first, second)
    assert np.array_equal(second, data.load_video_thwc_uint8(str(b), 16, 1))


def test_truncated_cache_entry_is_decoded_again(tmp_path, capsys):
    write_mp4(tmp_path / "a.mp4", 12)
    cache = tmp_path / "cache"
    first = data.cached_video_thwc_uint8(str(tmp_path / "a.mp4"), 16, 1, str(cache))
    [entry] = cache.iterdir()
    whole = entry.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"", whole[:128]):     # cut mid-array, empty, header only
        entry.write_bytes(damaged)
        again = data.cached_video_thwc_uint8(str(tmp_path / "a.mp4"), 16, 1, str(cache))
        assert np.array_equal(again, first) and entry.read_bytes() == whole     # rebuilt in place
        warning = one_line(capsys.readouterr().err)
        assert warning.startswith(f"warning: cache entry '{entry}' is damaged") and "decoding 'a.mp4' again" in warning
    assert sorted(p.name for p in cache.iterdir()) == [entry.name]   # no partial file left behind


def test_cache_entry_of_the_wrong_shape_is_decoded_again(tmp_path, capsys):
    write_mp4(tmp_path / "a.mp4", 6)
    cache = tmp_path / "cache"
    first = data.cached_video_thwc_uint8(str(tmp_path / "a.mp4"), 16, 1, str(cache))
    [entry] = cache.iterdir()
    np.save(entry, np.zeros((6, 8, 8, 3), dtype=np.uint8))        # e.g. written by another version
    assert np.array_equal(data.cached_video_thwc_uint8(str(tmp_path / "a.mp4"), 16, 1, str(cache)), first)
    assert "is damaged (shape (6, 8, 8, 3), uint8)" in one_line(capsys.readouterr().err)


def test_unwritable_cache_folder_decodes_without_it(tmp_path, capsys):
    """A read-only working directory: runs/cache cannot be made. Here its parent is a file, which
    stops root as well."""
    write_mp4(tmp_path / "a.mp4", 20)
    write_mp4(tmp_path / "b.mp4", 20)
    (tmp_path / "runs").write_text("not a folder")
    cache = str(tmp_path / "runs" / "cache")
    clips = data.video_folder_clips(str(tmp_path), frames=8, size=16, frame_stride=1, cache_dir=cache)
    assert [c.shape for c in clips.values()] == [(2, 8, 3, 16, 16)] * 2
    warning = one_line(capsys.readouterr().err)                   # one warning for the folder, not one per video
    assert warning.startswith(f"warning: cannot write the video cache '{cache}'") and "decoding without it" in warning
    assert sorted(os.listdir(tmp_path)) == ["a.mp4", "b.mp4", "runs"]


def test_read_only_working_directory_decodes_without_cache(tmp_path, capsys, monkeypatch):
    folder = unwritable_folder(tmp_path)
    write_mp4(tmp_path / "a.mp4", 20)
    monkeypatch.chdir(folder)
    clip = data.video_file_clips(str(tmp_path / "a.mp4"), frames=8, size=16, frame_stride=1)   # default runs/cache
    assert clip.shape == (2, 8, 3, 16, 16) and "cannot write the video cache" in one_line(capsys.readouterr().err)


# --- 5, 6. --data: a file, or too little video for one training clip and one validation clip ---------
def test_data_that_is_a_file_says_so(tmp_path):
    write_mp4(tmp_path / "a.mp4", 4)
    with pytest.raises(data.DataError) as error:
        data.video_folder_clips(str(tmp_path / "a.mp4"), frames=4, size=16, cache_dir=str(tmp_path / "c"))
    assert str(error.value) == (f"--data '{tmp_path / 'a.mp4'}' is a file: pass a folder of videos, e.g. its folder "
                                f"'{tmp_path}' (every video in it is used) or one holding only this file")


def test_one_video_with_one_clip_names_it_its_frames_and_the_fix(tmp_path):
    """Training holds the last clip out to validate: one clip leaves nothing to train on, which
    training.py used to report as '0 training videos cannot feed 1 micro-batches: lower --accum'."""
    folder = tmp_path / "one"
    folder.mkdir()
    write_mp4(folder / "a.mp4", 40)                               # 20 frames after stride 2: one clip of 16
    with pytest.raises(data.DataError) as error:
        data.video_folder_clips(str(folder), frames=16, size=16, frame_stride=2, cache_dir=str(tmp_path / "c"))
    assert str(error.value) == ("'a.mp4' has 20 frames after frame_stride=2: one clip of 16, and training needs 2 "
                                "(one to train on, one to validate): lower --history or --frame_stride, or use a "
                                "longer video, or add another video")
    write_mp4(folder / "b.mp4", 12)                               # too short beside it: still one clip in all
    with pytest.raises(data.DataError, match="'a.mp4' has 20 frames"):
        data.video_folder_clips(str(folder), frames=16, size=16, frame_stride=2, cache_dir=str(tmp_path / "c"))
    assert len(data.video_folder_clips(str(folder), frames=16, size=16, frame_stride=2, cache_dir=str(tmp_path / "c"),
                                       min_clips=1)["a.mp4"]) == 1


def test_too_short_advice_is_the_callers(tmp_path):
    """sample.py takes no --history: it passes its own fix."""
    write_mp4(tmp_path / "a.mp4", 6)
    with pytest.raises(data.VideoTooShort) as error:
        data.video_file_clips(str(tmp_path / "a.mp4"), frames=16, size=16, frame_stride=1, cache_dir=str(tmp_path / "c"),
                              advice="use a checkpoint with a shorter history")
    assert str(error.value) == "'a.mp4' has 6 frames after frame_stride=1, fewer than the 16 a clip needs: " \
                               "use a checkpoint with a shorter history"


def test_data_demo_is_one_line(tmp_path, cli):
    code, line = in_process(cli, data, tmp_path / "nowhere")
    assert code == 2 and line == f"error: video folder '{tmp_path / 'nowhere'}' does not exist: pass --data " \
                                 "synthetic or a folder of .mp4/.webm/.gif files"


# --- 7. evaluate.py --curves: corrupt lines are skipped, runs without a PSNR curve explained ----------
def metrics_run(folder, lines):
    folder.mkdir()
    (folder / "metrics.jsonl").write_bytes("".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))
    return str(folder)


def test_curves_skip_corrupt_lines_with_one_warning(tmp_path):
    good = [json.dumps({"step": 20, "loss": 0.5}), json.dumps({"step": 50, "val": {"psnr": 14.0}}),
            json.dumps({"step": 100, "val": {"psnr": 15.5}})]
    run = metrics_run(tmp_path / "run", good[:2] + ['{"step": 70, "val": {"ps', "\udcff\x00garbage", "[1, 2]"] + good[2:])
    done = script("evaluate.py", "--curves", run, "--results", str(tmp_path / "results"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert one_line(done.stderr) == f"warning: skipped 3 corrupt lines of {run}/metrics.jsonl"
    assert (tmp_path / "results" / "curves.png").stat().st_size > 1000


def test_curves_of_runs_without_a_retrieval_curve(tmp_path, cli):
    ar = metrics_run(tmp_path / "ar", [json.dumps({"step": 4, "val": {"chunk_psnr": 12.0, "chunk_ssim": 0.3}})])
    code, line = in_process(cli, evaluate, "--curves", ar, "--results", tmp_path)
    assert code == 2 and line == f"error: --curves: {ar} is a train_ar.py run (next-chunk PSNR, not retrieval): " \
                                 "pass run folders of train_pfp.py"
    early = metrics_run(tmp_path / "early", [json.dumps({"step": 20, "loss": 0.5}),
                                             json.dumps({"step": 40, "val": {"psnr": float("nan")}})])   # diverged
    code, _, err = cli(evaluate, "--curves", early, "--results", tmp_path)
    assert code == 2 and err.strip().splitlines() == [f"warning: {early} has no validation PSNR yet (one every --eval_every "
                                            "steps): left out", "error: --curves: no run has a validation PSNR to plot "
                                            "yet: train longer than --eval_every steps"]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("{}\n")
    code, line = in_process(cli, evaluate, "--curves", metrics, "--results", tmp_path)
    assert code == 2 and "is a file, not a run folder" in line


# --- the row cache: a stale entry is replaced, a stopped row continues, a broken summary retrains -----
def test_cache_miss_replaces_a_stale_entry(tmp_path):
    calls = []
    fake = lambda cfg, out, *a, **k: calls.append(k) or {"psnr": 1.0}
    cfg = Config()
    out = tmp_path / "row"
    cache.train_missing(fake, cfg, str(out))                   # nothing there
    out.mkdir()
    (out / "ckpt.pt").write_bytes(b"truncated")                   # not a checkpoint: a stale entry
    (out / "summary.json").write_text('{"psnr": 1')               # cut short: a miss, not a traceback
    assert cache.cached_summary(str(out)) is None
    cache.train_missing(fake, cfg, str(out), stage=2)
    assert [(k["resuming"], k["overwrite"]) for k in calls] == [(False, True), (False, True)]
    (out / "summary.json").write_text('{"psnr": 1.5}')
    assert cache.cached_summary(str(out)) == {"psnr": 1.5}


# --- 8. Ctrl-C and SIGTERM: one line, exit code 130 ------------------------------------------------
def start(args, cwd=ROOT, **kwargs):
    """Popen with stdout and stderr collected by threads, so the test can wait for a line."""
    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, **kwargs)
    proc.out, proc.err = [], []
    for stream, into in ((proc.stdout, proc.out), (proc.stderr, proc.err)):
        threading.Thread(target=lambda s=stream, i=into: i.extend(iter(lambda: s.read(1), "")), daemon=True).start()
    return proc


def wait_for(proc, text, timeout=HANG):
    deadline = time.time() + timeout
    while text not in "".join(proc.out + proc.err):
        assert proc.poll() is None and time.time() < deadline, "".join(proc.err)[-3000:]
        time.sleep(0.1)


def finish(proc):
    proc.wait(timeout=HANG)
    time.sleep(0.2)                                               # the reader threads drain the pipes
    return proc.returncode, "".join(proc.err)


def test_bench_sigterm_while_timing_is_one_line(tmp_path):
    proc = start([os.path.join(ROOT, "bench.py"), "--scales", "tiny", "--steps", "100000", "--skip_curve",
                  "--out", str(tmp_path / "out")])
    wait_for(proc, "bench on")
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 130 and one_line(err) == "interrupted: bench.py stopped; files it had finished are kept"
    assert not (tmp_path / "out").exists()


def test_ctrl_c_during_the_ar_curve_stops_its_process_too():
    """Ctrl-C reaches the whole process group, the curve's own process included: one line, from
    bench alone, and no process left behind."""
    code = ("from dataclasses import replace; from config import SCALES, run_main; import bench\n"
            "cfg = replace(SCALES['tiny'], dim=32, heads=2, depth=1, hr_channels=4, sample_steps=10**6, threads=1)\n"
            "print('curve', flush=True); run_main(lambda: bench.ar_cost_curve(cfg, [8], 1))")
    proc = start(["-c", code], start_new_session=True)
    wait_for(proc, "curve")
    children, deadline = [], time.time() + HANG
    while not children and time.time() < deadline:                # the pool's process, not the resource tracker
        children = [c for c in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
                    if "spawn_main" in open(f"/proc/{c}/cmdline").read()]
        time.sleep(0.2)
    assert children
    time.sleep(4)                                                 # the child is importing torch, or sampling
    os.killpg(proc.pid, signal.SIGINT)
    status, err = finish(proc)
    assert status == 130 and one_line(err) == "interrupted: -c stopped; files it had finished are kept"
    for child in children:                                        # terminated (a zombie of init's counts as gone)
        try:
            assert "\tZ" in open(f"/proc/{child}/status").read().split("State:")[1][:5]
        except FileNotFoundError:
            pass


def test_evaluate_sigterm_while_training_saves_the_row_and_the_next_run_continues_it(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):                              # 40 frames / stride 2: one clip each
        write_mp4(videos / name, 40)
    runs = tmp_path / "table1"                                    # the video cache goes to ./runs/cache
    proc = start([os.path.join(ROOT, "evaluate.py"), "--tables", "real", "--real", str(videos), "--steps", "100000",
                  "--runs", str(runs), "--results", str(tmp_path / "results"), "--threads", "1"], cwd=tmp_path)
    wait_for(proc, "stage 1")                                     # the row's training bar
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    [row] = list(runs.iterdir())
    assert code == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"interrupted while training {row}: its ckpt.pt is saved; run the same "
                                           "command again to continue from there")
    # the next run continues that row: the same config resumes it, another replaces it
    saved = Config(**torch.load(row / "ckpt.pt", weights_only=True)["config"])
    calls = []
    fake = lambda cfg, out, *a, **k: calls.append((k["resuming"], k["overwrite"])) or {}
    cache.train_missing(fake, saved, str(row))
    cache.train_missing(fake, Config(**{**saved.__dict__, "steps": 7}), str(row))
    assert calls == [(True, False), (False, True)]


# --- 9. the rest --------------------------------------------------------------------------------------
def test_a_chart_that_cannot_be_written_is_one_line_and_leaves_nothing(tmp_path):
    (tmp_path / "results").write_text("a file")
    with pytest.raises(ConfigError, match=r"could not write .*curves.png \(File exists\): free disk space"):
        line_chart({"a": ([1, 2], [3, 4])}, str(tmp_path / "results" / "curves.png"))
    target = tmp_path / "out.png"
    target.mkdir()                                                # the rename fails after the PNG is drawn
    with pytest.raises(ConfigError, match="could not write"):
        line_chart({"a": ([1, 2], [3, 4])}, str(target))
    assert sorted(os.listdir(tmp_path)) == ["out.png", "results"]   # no temporary file left behind


# --- a real full disk: a small tmpfs, where this machine lets the tests mount one ----------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 200 KB tmpfs mounted at tmp_path/disk; skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield disk
    subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_full_disk_never_replaces_a_good_checkpoint(small_disk):
    from checkpoint import write_atomically
    path = str(small_disk / "ckpt.pt")
    write_atomically(path, lambda tmp: torch.save({"w": torch.zeros(100)}, tmp))
    good = open(path, "rb").read()
    with pytest.raises(ConfigError, match="previous version is kept"):
        write_atomically(path, lambda tmp: torch.save({"w": torch.randn(200_000)}, tmp))   # 800 KB
    assert open(path, "rb").read() == good and os.listdir(small_disk) == ["ckpt.pt"]


def test_a_full_disk_never_replaces_a_good_video(small_disk):
    from plot import save_bthwc_uint8_as_mp4_and_gif
    rng = np.random.default_rng(0)
    save_bthwc_uint8_as_mp4_and_gif(rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8), str(small_disk / "generate"))
    good = (small_disk / "generate.mp4").read_bytes()
    with pytest.raises(ConfigError, match="previous version is kept"):
        save_bthwc_uint8_as_mp4_and_gif(rng.integers(0, 255, (60, 96, 96, 3), dtype=np.uint8), str(small_disk / "generate"))
    assert (small_disk / "generate.mp4").read_bytes() == good
    assert len(imageio.v2.mimread(small_disk / "generate.mp4")) == 4


def test_the_suite_finds_every_process_a_test_left_behind():
    """conftest.no_process_left_behind kills what descendants() finds after each test: a child
    in a session of its own and the grandchild it started must both be found."""
    from conftest import descendants
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "p = subprocess.Popen(['sleep', '600']); print(p.pid, flush=True); time.sleep(600)"],
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
    grandchild = int(child.stdout.readline())
    assert {child.pid, grandchild} <= descendants(os.getpid())
