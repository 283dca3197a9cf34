"""recall.py (evaluate.py --objects): the object metric, chance, the drift meter, and the pipeline."""
import json
import os
from dataclasses import replace

import pytest
import torch

import cut_back
import recall
from config import Config, check


def test_masked_psnr_reads_only_the_object():
    truth = torch.zeros(2, 3, 3, 8, 8)
    mask = torch.zeros(2, 3, 8, 8)
    mask[:, :, 2:4, 2:6] = 1
    got = truth + 0.2 * mask[:, :, None]                      # 0.2 in [-1, 1] = 0.1 in [0, 1] -> MSE 0.01 -> 20 dB
    got[:, :, :, 6:] = 1.0                                    # a wrong background is not the object's error
    assert torch.allclose(recall.masked_psnr(got, truth, mask), torch.full((2,), 20.0), atol=1e-4)


def test_chance_differs_from_the_truth_only_on_the_object():
    cfg = Config()
    video, mask, other = recall.recall_set(cfg, hidden=4, n=3)
    assert video.shape == other.shape == (3, cfg.history + cfg.chunk, 3, 32, 32) and mask.shape == (3, 18, 32, 32)
    chunk = slice(cfg.history, None)
    assert mask[:, chunk].flatten(1).any(1).all()             # the object is back in every chunk
    differs = (video != other).any(dim=2)                     # (B, T, H, W)
    assert differs.any()
    chance = recall.masked_psnr(other[:, chunk], video[:, chunk], mask[:, chunk])
    assert (chance < 25).all()                                # another look is far from this one


def test_drift_stats_and_relative_drift_in_closed_form():
    video = torch.zeros(1, 4, 3, 8, 8)
    video[:, :, 0] = 0.5                                      # a red cast
    video[:, :, :, :, ::2] += 0.2                             # vertical stripes: horizontal neighbours differ by 0.2
    stats = recall.drift_stats(video)                         # (1, 4, 5)
    assert torch.allclose(stats[0, 0, :3], torch.tensor([0.6, 0.1, 0.1]))
    assert torch.allclose(stats[0, 0, 4], torch.tensor(0.1))  # (0 vertical + 0.2 horizontal) / 2
    later = torch.cat([video[:, :2], video[:, 2:] * 0.5], dim=1)   # the second chunk fades to half
    d = recall.relative_drift(recall.drift_stats(later), chunks=2)
    assert d["spread"] == pytest.approx([1.0, 0.5]) and d["sharpness"] == pytest.approx([1.0, 0.5])
    assert d["mean"] == pytest.approx([0.0, (0.3 + 0.05 + 0.05) / 3])


def test_stage2_data_replaces_a_share_of_the_clips_with_recall_world_clips():
    cfg = check(replace(Config(), train_videos=8, val_videos=2))
    train, val, source = recall.stage2_data(cfg, 0.5)
    assert train.shape == (8, 18, 3, 32, 32) and val.shape == (2, 18, 3, 32, 32) and "4 of the 8" in source
    # a recall-world clip has a static background: most pixels never change; a synthetic-world clip pans
    still = lambda clip: (clip[1:] == clip[:-1]).all(dim=1).float().mean().item()
    assert all(still(c) > 0.6 for c in train[:4]) and all(still(c) < 0.6 for c in train[4:])


def test_recall_pipeline_writes_everything_and_reads_its_cache(tmp_path, monkeypatch):
    """Every row trained for a few steps: the files, the table's rows and claims; a second run retrains nothing."""
    cfg = check(replace(Config(), dim=32, heads=2, depth=1, hr_channels=4, steps=2, train_videos=4, val_videos=2,
                        batch=2, sample_steps=1, eval_every=10**9, log_every=1, threads=1))
    runs, results = str(tmp_path / "runs"), str(tmp_path / "results")
    recall.run(cfg, 2, runs, results, "test", n=2, chunks=2)
    for name in ("recall.md", "recall.json", "recall.png", "recall_grid.png", "drift.png", "generate.gif", "generate.mp4"):
        assert os.path.getsize(os.path.join(results, name)) > 100, name
    numbers = json.load(open(os.path.join(results, "recall.json")))
    labels = ["pfp", "pfp without pretrain", "large patchifier", "window only", "full history"]
    assert list(numbers["summaries"]) == labels
    tokens = {label: numbers["summaries"][label]["context_tokens"] for label in labels}
    assert tokens == {"pfp": 128 + 128, "pfp without pretrain": 256, "large patchifier": 256,
                      "window only": 128, "full history": 1024 + 128}
    assert numbers["summaries"]["pfp without pretrain"]["init"] == "none"
    assert "DiT only" in numbers["summaries"]["window only"]["init_origin"]
    assert len(numbers["claims"]) == 6 and set(numbers["drift"]) == {"truth", *labels[:4]}
    # window only sees nothing before its window, so another look there changes nothing: exactly 0 dB
    assert all(value == 0 for value in numbers["memory_use_db"]["window only"].values())
    assert any(value != 0 for value in numbers["memory_use_db"]["pfp"].values())
    table = open(os.path.join(results, "recall.md")).read()
    assert all(f"| {label} |" in table for label in labels) and "chance" in table
    monkeypatch.setattr(recall, "train", lambda *a, **k: pytest.fail("stage 1 retrained"))
    monkeypatch.setattr(recall, "train_ar", lambda *a, **k: pytest.fail("stage 2 retrained"))
    recall.train_rows(cfg, 2, runs, 0.5)


def test_cut_back_report_scores_a_storyboard_run_and_refuses_others(tmp_path):
    """cut_back.report (evaluate.py --cut_back): the chance row is another look of A (far from the truth), copying
    A's last frame is near-perfect for these mostly still shots, and a stage-1 run is refused."""
    from train_ar import train_ar
    from train_pfp import train
    from config import ConfigError
    cfg = check(Config(dim=32, heads=2, depth=1, hr_channels=4, history=8, data="storyboard", captions=True,
                       compressor="only_lr", rate="1x1x1", steps=2, batch=2, train_videos=4, val_videos=2,
                       eval_every=1000, ckpt_every=1000, sample_steps=2))
    train_ar(cfg, str(tmp_path / "run"), "none", quiet=True)
    table = cut_back.report([("full history", str(tmp_path / "run"))], [3, 8], 6, str(tmp_path / "results"), "test")
    scores = table["full history"]["scores"]
    for gap in (3, 8):
        s = scores[gap]
        assert len(s["model"]) == len(s["swapped"]) == 6
        assert sum(s["chance"]) / 6 < 15 and sorted(s["copy"])[3] > 40           # most returns copy A exactly
    text = (tmp_path / "results" / "cut_back.md").read_text()
    assert "| full history | 640 |" in text and "full history is" in text           # a row (8 + 2 frames of 64 tokens), a claim
    assert (tmp_path / "results" / "cut_back.png").is_file() and (tmp_path / "results" / "cut_back.gif").is_file()
    with pytest.MonkeyPatch.context() as patch:                  # the scores are kept beside the checkpoint
        patch.setattr(cut_back, "cut_back_scores", lambda *a, **k: pytest.fail("scored again"))
        again = cut_back.report([("full history", str(tmp_path / "run"))], [3, 8], 6, str(tmp_path / "results"), "test")
    assert again["full history"]["scores"] == table["full history"]["scores"]
    train_ar(replace(cfg, seed=1), str(tmp_path / "seed1"), "none", quiet=True)     # a row of two seeds: per-story means
    one = cut_back.report([("b", str(tmp_path / "seed1"))], [3, 8], 6, str(tmp_path / "results"), "test")["b"]["scores"]
    both = cut_back.report([("two", f"{tmp_path / 'run'},{tmp_path / 'seed1'}")], [3, 8], 6, str(tmp_path / "results"),
                           "test")["two"]["scores"]
    for gap in (3, 8):
        for key in ("model", "swapped"):
            want = [(a + b) / 2 for a, b in zip(scores[gap][key], one[gap][key])]
            assert one[gap][key] != scores[gap][key] and both[gap][key] == pytest.approx(want, abs=1e-5)
        assert both[gap]["chance"] == pytest.approx(scores[gap]["chance"])
    train(replace(cfg, compressor="pfp", rate="2x2x2"), str(tmp_path / "s1"), quiet=True)
    with pytest.raises(ConfigError, match="not a train_ar.py run on --data storyboard"):
        cut_back.report([("s1", str(tmp_path / "s1"))], [3], 2, str(tmp_path / "results"), "test")


def test_recall_rows_train_from_one_base_in_two_workers_and_are_read_back(tmp_path):
    """evaluate.py --recall --quick: one base; pfp's stage 1 starts from it; every stage-2 row starts
    from the base or its own stage 1; two worker processes train and score the rows; a second call
    trains and scores nothing."""
    steps = {"base": 2, "stage1": 2, "stage2": [{"steps": 2}]}
    cfg = check(replace(cut_back.story_config("tiny"), dim=32, heads=2, depth=1, hr_channels=4, history=8, batch=2,
                        train_videos=4, val_videos=2, ckpt_every=1000, sample_steps=2, threads=1))
    run = lambda: cut_back.run(cfg, True, str(tmp_path / "runs"), str(tmp_path / "results"), "test", stories=3,
                               workers=2, steps=steps)
    table = run()
    assert list(table) == ["full history (base)", "pfp 2x2x2", "pfp without pretrain", "window only"]
    summaries = {label: json.load(open(os.path.join(row["run"], "summary.json"))) for label, row in table.items()}
    base = os.path.join(table["full history (base)"]["run"], "ckpt.pt")
    assert summaries["full history (base)"]["init"] == "none"
    assert summaries["pfp without pretrain"]["init"] == summaries["window only"]["init"] == base
    stage1 = summaries["pfp 2x2x2"]["init"]
    assert stage1 != base and json.load(open(os.path.join(os.path.dirname(stage1), "config.json")))["split_return"] == 0
    assert {s["compressor"] for s in summaries.values()} == {"only_lr", "pfp", "none"}
    assert all(len(row["scores"][6]["model"]) == 3 for row in table.values())
    kept = sorted(tmp_path.glob("runs/*/*.pt"))                  # every ckpt.pt and the scores beside it
    stamps = [p.stat().st_mtime_ns for p in kept]
    assert len(kept) == 2 * 4 + 1 and run().keys() == table.keys()
    assert [p.stat().st_mtime_ns for p in kept] == stamps        # nothing trained or scored again


def test_stage_two_legs_chain_from_each_other_with_their_own_settings(tmp_path):
    """The full benchmark's stage 2 runs in legs: each starts from the last one's checkpoint with its
    own changes; the ceiling takes its own legs and says their steps in its label."""
    steps = {"base": 2, "stage1": 2, "stage2": [{"steps": 2}, {"steps": 3, "lr": 1e-3}],
             "ceiling": [{"steps": 1}, {"steps": 2, "split_return": 1.0}]}
    cfg = check(replace(cut_back.story_config("tiny"), dim=32, heads=2, depth=1, hr_channels=4, history=8, batch=2,
                        train_videos=4, val_videos=2, ckpt_every=1000, sample_steps=2, threads=1))
    base = cut_back.train_base(cfg, str(tmp_path), steps)
    window, full = [r for r in cut_back.ROWS if r.label == "window only" or r.rate == "1x1x1"]
    last = cut_back.train_row(cfg, str(tmp_path), window, base, steps)
    assert os.path.basename(last).startswith("stage2_window_only_5_")
    second = json.load(open(os.path.join(last, "summary.json")))
    first = os.path.dirname(second["init"])
    assert os.path.basename(first).startswith("stage2_window_only_") and first != last
    assert json.load(open(os.path.join(first, "summary.json")))["init"] == os.path.join(base, "ckpt.pt")
    configs = [json.load(open(os.path.join(run, "config.json"))) for run in (first, last)]
    assert [(c["steps"], c["lr"]) for c in configs] == [(2, cfg.lr), (3, 1e-3)]
    ceiling = json.load(open(os.path.join(cut_back.train_row(cfg, str(tmp_path), full, base, steps), "config.json")))
    assert (ceiling["steps"], ceiling["split_return"], ceiling["compressor"]) == (2, 1.0, "only_lr")
    assert cut_back.label(full, steps) == "full history (base + 3 stage-2 steps)"


def test_cut_back_claims_read_the_bars():
    """The claims: the ceiling's +6 dB and 3 dB, window only within 1 dB of chance, pfp's share of the
    ceiling's gain over window only, and pfp's paired intervals against the other rows."""
    def row(model, swapped, chance, tokens):
        return {"context_tokens": tokens, "scores": {6: {"model": model, "swapped": swapped, "chance": chance}}}
    chance = [8.0, 8.2, 7.8, 8.0]
    table = {"full history (base)": row([15.0, 15.2, 14.8, 15.0], [10.0] * 4, chance, 1152),
             "pfp 2x2x2": row([12.0, 12.3, 11.9, 12.1], [9.0] * 4, chance, 256),
             "window only": row([8.5, 8.6, 8.4, 8.5], [8.5, 8.6, 8.4, 8.5], chance, 128),
             "pfp without pretrain": row([12.5, 12.6, 12.4, 12.5], [9.0] * 4, chance, 256)}
    text = "\n".join(cut_back.claims(table, [2, 6], window=2))
    assert "gap 2" not in text                                         # not beyond the window
    assert "full history (base) is +7.00 dB over chance and uses 5.00 dB of memory (bar: +6 and 3): holds" in text
    assert "window only is +0.50 dB from chance (bar: within 1): holds" in text
    assert "pfp 2x2x2 recovers 55% of full history (base)'s gain" in text and "256 against 1,152" in text
    assert "pfp 2x2x2 - pfp without pretrain = -0.42 dB" in text and text.endswith("does not hold")
    pair = {k: table[k] for k in ("pfp 2x2x2", "pfp without pretrain")}   # no ceiling: the orderings alone
    assert cut_back.claims(pair, [6], window=2) == [
        "- gap 6: pfp 2x2x2 - pfp without pretrain = -0.42 dB [-0.52, -0.33]: does not hold"]


def test_a_score_cache_missing_its_frames_is_scored_again(tmp_path, monkeypatch):
    """cut_back.pt with the right key but no "frames" (a damaged or hand-edited file): scored again,
    not a KeyError in the report."""
    import cut_back
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"weights")
    gaps, n = [3], 2
    whole = {3: {"model": [1.0, 2.0], "swapped": [0.5, 0.5], "chance": [0.1, 0.2], "copy": [9.0, 9.0],
                 "frames": torch.zeros(1, 2, 3, 4, 4)}}
    key = [os.path.getmtime(ckpt), os.path.getsize(ckpt), gaps, n, cut_back.CUT_BACK_SEED_OFFSET]
    damaged = {3: {k: v for k, v in whole[3].items() if k != "frames"}}
    torch.save({"key": key, "scores": damaged}, tmp_path / "cut_back.pt")
    calls = []
    monkeypatch.setattr(cut_back, "cut_back_scores", lambda *a, **k: calls.append(1) or whole)
    got = cut_back.scored(str(ckpt), None, None, None, gaps, n)
    assert calls == [1] and torch.equal(got[3]["frames"], whole[3]["frames"])
    got = cut_back.scored(str(ckpt), None, None, None, gaps, n)                # now whole: read back
    assert calls == [1] and got[3]["model"] == [1.0, 2.0]
