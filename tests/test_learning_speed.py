"""The learning-speed benchmark's arithmetic: training minutes from the log, the first crossing."""
import json

import pytest

from benchmarks.learning_speed import minutes_to_reach, read_run


def fake_run(folder, psnrs, ms=600.0, log_every=10, eval_every=20):
    """A run folder whose steps each took `ms` and whose validation PSNRs are psnrs, one per eval_every."""
    folder.mkdir()
    steps = eval_every * len(psnrs)
    (folder / "config.json").write_text(json.dumps({"steps": steps, "rate": "2x2x2"}))
    rows = []
    for step in range(log_every, steps + 1, log_every):
        rows.append({"step": step, "ms_per_step": ms})
        if step % eval_every == 0:
            rows.append({"step": step, "val": {"psnr": psnrs[step // eval_every - 1], "psnr_mean": 1.0}})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 9')
    return folder


def test_minutes_come_from_the_steps_and_the_crossing_is_interpolated(tmp_path):
    run = read_run(str(fake_run(tmp_path / "a", [10.0, 14.0, 18.0])))          # 20 steps of 0.6 s: 0.2 min
    assert [round(p[0], 6) for p in run["points"]] == [0.2, 0.4, 0.6]
    assert minutes_to_reach(run["points"], 16.0) == pytest.approx(0.5)         # halfway from 14 to 18
    assert minutes_to_reach(run["points"], 9.0) == pytest.approx(0.2)          # already there at the first
    assert minutes_to_reach(run["points"], 18.5) is None
    assert minutes_to_reach(run["points"], 1.0, column=3) == pytest.approx(0.2)


def test_a_folder_without_a_run_is_one_line(tmp_path, cli):
    code, _, err = cli("benchmarks.learning_speed", str(tmp_path), "--results", str(tmp_path / "out"))
    assert code == 2 and "not a train_pfp.py run folder" in err and len(err.strip().splitlines()) == 1


def test_it_writes_the_picture_and_the_page(tmp_path, cli):
    a, b = fake_run(tmp_path / "a", [10.0, 12.0]), fake_run(tmp_path / "b", [12.0, 16.0], ms=300.0)
    code, out, _ = cli("benchmarks.learning_speed", str(a), str(b), "--labels", "old", "new", "--target", "12",
                       "--results", str(tmp_path / "out"))
    assert code == 0 and (tmp_path / "out" / "learning_speed.png").stat().st_size > 1000
    page = (tmp_path / "out" / "learning_speed.md").read_text()
    assert "| old | 0.4 | never |" in page and "| new | 0.1 | never |" in page   # posterior means stay at 1 dB


def test_paired_runs_differ_by_zero_from_themselves_and_not_from_another_seed(tmp_path):
    from dataclasses import replace
    from benchmarks.learning_speed import paired
    from config import SCALES, check
    from train_pfp import train
    cfg = check(replace(SCALES["tiny"], dim=32, depth=1, heads=2, hr_channels=8, history=8, steps=4, batch=4,
                        train_videos=8, val_videos=2, sample_steps=2, threads=1, warmup=2, eval_every=100000))
    for seed in (0, 1):
        train(replace(cfg, seed=seed), str(tmp_path / f"s{seed}"), quiet=True)
    same = paired([str(tmp_path / "s0")], [str(tmp_path / "s0")])
    assert same == {"psnr": (0.0, 0.0), "psnr_mean": (0.0, 0.0)}
    other = paired([str(tmp_path / "s0")], [str(tmp_path / "s1")])
    assert other["psnr"][0] != 0.0 and other["psnr"][1] > 0
