"""Stage 2 (train_ar.py, sample.ar_context/generate): no future leakage, context token counts,
positions, loading a stage-1 checkpoint, and the command lines end to end. Runs with --latent pca:
the basis is fitted on the training clips, saved, reported, and shared by the stages built on it."""
import json
import os
from dataclasses import replace

import pytest
import torch

from checkpoint import load_checkpoint
from compressor import Compressor
from config import Config, ConfigError, check
from data import VAL_SEED_OFFSET, synthetic_videos
from dit import DiT
from latent import Latent, encode
from sample import ar_context, chunk_positions, generate
from train_ar import ar_loss, init_models, split_points
from training import checkpoint_state, latent_ceiling

SMALL = Config(dim=32, heads=2, depth=2, hr_channels=4, history=8)        # 8 latent frames of 8x8 tokens


def long_video(cfg, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, cfg.history + cfg.chunk * cfg.vae_time, 3, cfg.height, cfg.width, generator=g) * 2 - 1


def models(cfg, seed=0):
    torch.manual_seed(seed)
    dit, phi = DiT(cfg), Compressor(cfg)
    phi.init_from_patchifier(dit.patchify.weight, dit.patchify.bias)
    return dit.eval(), phi.eval()


@pytest.mark.parametrize("variant,rate", [("pfp", "2x2x2"), ("large_patchifier", "2x2x2"), ("none", "2x2x2"),
                                          ("only_lr", "1x1x1"), ("pfp", "4x4x2")])
def test_no_future_leakage_frames_at_or_after_s_change_neither_memory_nor_window(variant, rate):
    cfg = replace(SMALL, compressor=variant, rate=rate)
    dit, phi = models(cfg)
    for s in split_points(cfg):
        video = long_video(cfg)
        future = video.clone()
        future[:, s * cfg.vae_time:] = torch.rand_like(future[:, s * cfg.vae_time:]) * 2 - 1   # a different future
        with torch.no_grad():
            context, pos = ar_context(dit, phi, video, s, cfg)
            context_f, pos_f = ar_context(dit, phi, future, s, cfg)
        assert torch.equal(context, context_f) and torch.equal(pos, pos_f), f"s={s}: the future leaked"
        # ... and the check can fail: the last frame before s does change the context
        past = video.clone()
        past[:, s * cfg.vae_time - 1] = -past[:, s * cfg.vae_time - 1]
        with torch.no_grad():
            assert not torch.equal(ar_context(dit, phi, past, s, cfg)[0], context)


def test_the_loss_reads_the_chunk_after_s_and_nothing_later():
    cfg = replace(SMALL, history=6)
    dit, phi = models(cfg)
    video = long_video(cfg)
    video = torch.cat([video, torch.rand_like(video[:, :4])], dim=1)       # frames beyond the chunk
    later = video.clone()
    s = 4
    later[:, (s + cfg.chunk) * cfg.vae_time:] = 0.0
    losses = []
    for v in (video, later):
        torch.manual_seed(0)
        losses.append(ar_loss(dit, phi, v, s, None, cfg)[0])
    assert torch.equal(losses[0], losses[1])
    changed = video.clone()
    changed[:, s * cfg.vae_time] = -changed[:, s * cfg.vae_time]             # the target itself
    torch.manual_seed(0)
    assert not torch.equal(ar_loss(dit, phi, changed, s, None, cfg)[0], losses[0])


@pytest.mark.parametrize("window", [0, 1, 2, 5])
def test_context_is_memory_plus_window_and_positions_run_into_the_chunk(window):
    cfg = replace(SMALL, window=window)                  # 2x2x2: 16 memory tokens per 2 latent frames
    dit, phi = models(cfg)
    n = (cfg.height // cfg.vae_space // cfg.patch) * (cfg.width // cfg.vae_space // cfg.patch)
    for s in split_points(cfg):
        context, pos = ar_context(dit, phi, long_video(cfg), s, cfg)
        w = min(window, s)
        assert context.shape == (2, s // 2 * n // 4 + w * n, cfg.dim)
        window_frames = pos[0, context.shape[1] - w * n:, 0].unique()
        assert window_frames.tolist() == list(range(cfg.latent_frames - w, cfg.latent_frames))
        # memory sits before the present, the chunk right after it: positions count from now
        assert pos[0, :, 0].max() < cfg.latent_frames
        assert pos[0, :context.shape[1] - w * n, 0].min() == pytest.approx(cfg.latent_frames - s + 0.5)   # oldest memory
    assert chunk_positions(2, cfg, "cpu")[0].tolist() == list(range(cfg.latent_frames, cfg.latent_frames + cfg.chunk))


def test_full_history_memory_is_the_raw_patchified_history():
    """--compressor only_lr --rate 1x1x1 --window 0: the context is the DiT's own tokens of every past frame."""
    cfg = replace(SMALL, compressor="only_lr", rate="1x1x1", window=0)
    dit, phi = models(cfg)
    video, s = long_video(cfg), 6
    context, pos = ar_context(dit, phi, video, s, cfg)
    latent = encode(video[:, :s], cfg.vae_space, cfg.vae_time)
    raw, raw_pos = dit.clean_tokens(latent, (torch.arange(s) + cfg.latent_frames - s).expand(2, s))
    assert torch.allclose(context, raw, atol=1e-5) and torch.equal(pos, raw_pos)


def test_generate_recompresses_the_growing_history(tmp_path):
    cfg = replace(SMALL, sample_steps=2)
    dit, phi = models(cfg)
    prompt = long_video(cfg, batch=1)[:, :4]
    video, used = generate(dit, phi, prompt, 3, cfg, torch.Generator().manual_seed(0), progress=False)
    assert video.shape == (1, 4 + 3 * cfg.chunk, 3, cfg.height, cfg.width)
    assert torch.equal(video[:, :4], prompt) and video.abs().max() <= 1
    n = 64                                  # tokens per latent frame (8 x 8); 2x2x2 memory keeps n/4 per 2 frames
    assert used == [s // 2 * n // 4 + cfg.window * n for s in (4, 6, 8)]


def checkpoint(cfg, path):
    dit, phi = models(cfg, seed=1)
    torch.save(checkpoint_state(cfg, 7, dit, phi, dit, phi, stage=1), path)
    return dit, phi


def test_init_from_stage1_loads_dit_and_compressor_or_starts_a_fresh_compressor(tmp_path):
    path = str(tmp_path / "ckpt.pt")
    dit1, phi1 = checkpoint(SMALL, path)
    dit, phi, origin = init_models(SMALL, path)
    assert all(torch.equal(a, b) for a, b in zip(dit.state_dict().values(), dit1.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(phi.state_dict().values(), phi1.state_dict().values()))
    # window only / full / cross-attention: the DiT is loaded, the rest starts as at stage 1
    for cfg in (replace(SMALL, compressor="none"), replace(SMALL, compressor="only_lr", rate="1x1x1"),
                replace(SMALL, cross_attn=True)):
        dit, phi, origin = init_models(cfg, path)
        assert torch.equal(dit.patchify.weight, dit1.patchify.weight)
    assert torch.equal(phi.lr_patchify.weight, phi1.lr_patchify.weight)
    assert "DiT only" in init_models(replace(SMALL, compressor="only_lr", rate="1x1x1"), path)[2]
    assert all((b.cross.out.weight == 0).all() for b in init_models(replace(SMALL, cross_attn=True), path)[0].blocks)
    with pytest.raises(ConfigError, match="does not match"):
        init_models(replace(SMALL, dim=64, heads=2), path)
    with pytest.raises(ConfigError, match="not found"):
        init_models(SMALL, str(tmp_path / "missing.pt"))


def test_train_ar_then_generate_end_to_end(tmp_path, cli):
    """Stage 1 -> stage 2 -> sample.py --generate: files, stage marks and context-token lines."""
    tiny = ["--dim", "32", "--heads", "2", "--depth", "1", "--hr_channels", "4", "--train_videos", "8",
            "--val_videos", "2", "--batch", "2", "--sample_steps", "2", "--log_every", "2", "--threads", "1"]
    s1, s2 = str(tmp_path / "s1"), str(tmp_path / "s2")
    code, _, err = cli("train_pfp.py", *tiny, "--steps", "2", "--eval_every", "100", "--out", s1)
    assert code == 0, err[-500:]
    code, _, err = cli("train_ar.py", "--init", f"{s1}/ckpt.pt", "--steps", "4", "--eval_every", "2", "--out", s2)
    assert code == 0, err[-500:]
    summary = json.load(open(f"{s2}/summary.json"))
    assert summary["stage"] == 2 and summary["context_tokens"] == 128 + 2 * 64 and "DiT and pfp" in summary["init_origin"]
    assert summary["config"]["dim"] == 32                      # the config came from the checkpoint
    assert os.path.isfile(f"{s2}/next_chunk.png") and torch.load(f"{s2}/ckpt.pt")["stage"] == 2
    code, out, err = cli("sample.py", "--ckpt", f"{s2}/ckpt.pt", "--generate", "--chunks", "2", "--out", tmp_path)
    assert code == 0, err[-500:]
    assert "chunk   1: history    8 frames -> 192 context tokens" in out        # 8 frames: 64 memory + 128 window
    assert "chunk   2: history   10 frames -> 208 context tokens" in out
    for name in ("generate.mp4", "generate.gif"):
        assert os.path.getsize(tmp_path / name) > 1000
    import imageio.v2 as imageio
    frames = imageio.mimread(str(tmp_path / "generate.mp4"))
    assert len(frames) == 8 + 2 * 2                            # prompt + 2 chunks of 2 frames
    code, out, _ = cli("sample.py", "--ckpt", f"{s1}/ckpt.pt", "--generate", "--chunks", "1", "--out", tmp_path)
    assert code == 0 and "warning: " in out and "stage-1" in out
    for bad, message in ((["--generate", "--prompt", "3"], "multiple of 2 frames"), (["--generate", "--retrieve"], "exactly one")):
        code, _, err = cli("sample.py", "--ckpt", f"{s2}/ckpt.pt", *bad)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["--init", "/no/such/ckpt.pt"], "not found"),
    (["--init", "none", "--window", "-1"], "--window"),
    (["--init", "none", "--rate", "2x2x2", "--chunk", "3"], "multiple of the rate's t"),
    (["--init", "none", "--split_full", "1.5"], "--split_full"),
])
def test_train_ar_bad_input_is_one_line_exit_2(args, message, cli):
    code, _, err = cli("train_ar.py", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cut_back_frames_are_read_off_the_captions():
    from captions import cut_back_frames
    from storyboard import storyboard_videos
    stories = storyboard_videos(range(40), 18, 32)
    assert torch.equal(cut_back_frames(stories["captions"]), stories["cut_back"])
    one_shot = stories["captions"][:, :1].expand(-1, 18, -1)                  # never cuts away: never returns
    assert (cut_back_frames(one_shot) == -1).all()


def test_storyboard_stage_two_splits_where_the_chunk_cuts_back_and_reads_its_captions(tmp_path, monkeypatch):
    """--split_return 1: every micro-batch's chunk holds the cut back to the opening shot, and the
    captions reach the DiT: the chunk's (its caption encoder learns) and, with --memory_captions,
    the memory's (its layer leaves zero)."""
    import train_ar
    from captions import cut_back_frames
    from data import TRAIN_SEED_OFFSET
    from storyboard import storyboard_videos
    cfg = check(replace(SMALL, data="storyboard", captions=True, memory_captions=True, caption_dropout=0.0, split_return=1.0, steps=4,
                        batch=4, train_videos=12, val_videos=2, eval_every=1000, log_every=1, ckpt_every=1000))
    stories = storyboard_videos([TRAIN_SEED_OFFSET + j for j in range(12)], cfg.history + cfg.chunk, cfg.height)
    seen, loss = [], train_ar.ar_loss

    def recording(dit, phi, video, s, captions, cfg):
        seen.append((video.clone(), s, captions.clone()))
        return loss(dit, phi, video, s, captions, cfg)
    monkeypatch.setattr(train_ar, "ar_loss", recording)
    train_ar.train_ar(cfg, str(tmp_path), "none", quiet=True)
    for video, s, caption in seen:
        for v, c in zip(video, caption):
            j = next(j for j in range(12) if torch.equal(stories["video"][j], v))
            back = cut_back_frames(stories["captions"][j:j + 1]).item()
            assert s <= back < s + cfg.chunk and torch.equal(c, stories["captions"][j])   # vae_time 1: frames
    weights = torch.load(tmp_path / "ckpt.pt", weights_only=True)["dit"]
    assert weights["caption_encoder.mlp.2.weight"].abs().sum() > 0 and weights["memory_caption.weight"].abs().sum() > 0


def test_generate_follows_a_written_story(tmp_path, cli):
    """sample.py --generate --story: each chunk reads its own captions; a story that does not cover
    every frame is one line."""
    import train_ar
    cfg = check(replace(SMALL, data="storyboard", captions=True, steps=2, batch=2, train_videos=4, val_videos=2,
                        eval_every=1000, ckpt_every=1000, sample_steps=2))
    train_ar.train_ar(cfg, str(tmp_path / "run"), "none", quiet=True)
    ckpt = str(tmp_path / "run" / "ckpt.pt")
    story = "0-4: red stripes, blue disc | 4-6: green dots, white cross | 6-8: red stripes, blue disc"
    code, out, err = cli("sample.py", "--ckpt", ckpt, "--generate", "--prompt", "4", "--chunks", "2", "--story", story,
                         "--out", tmp_path)
    assert code == 0, err[-2000:]
    assert f"story: {story}" in out and (tmp_path / "generate.gif").stat().st_size > 1000
    code, _, err = cli("sample.py", "--ckpt", ckpt, "--generate", "--prompt", "4", "--chunks", "2",
                       "--story", "0-6: red stripes, blue disc", "--out", tmp_path)
    assert code == 2 and err.strip() == \
        "error: the story ends at frame 6, which stops before the end of the 8 frames it must cover exactly"


def test_stage_one_starts_from_a_base_video_model(tmp_path):
    """train_pfp --init BASE: the DiT is the base's and phi's LR branch starts as its patchifier; a
    base of another shape is one line."""
    import train_ar
    from train_pfp import train
    base = check(replace(SMALL, data="storyboard", captions=True, compressor="only_lr", rate="1x1x1", steps=3, batch=2,
                         train_videos=4, val_videos=2, eval_every=1000, ckpt_every=1000, sample_steps=2))
    train_ar.train_ar(base, str(tmp_path / "base"), "none", quiet=True)
    weights = torch.load(tmp_path / "base" / "ckpt.pt", weights_only=True)["dit_ema"]
    stage1 = check(replace(SMALL, data="storyboard", captions=True, steps=1, batch=2, train_videos=4, val_videos=2,
                           lr=1e-12, warmup=0, eval_every=1000, ckpt_every=1000, sample_steps=2))
    train(stage1, str(tmp_path / "s1"), quiet=True, init=str(tmp_path / "base" / "ckpt.pt"))
    got = torch.load(tmp_path / "s1" / "ckpt.pt", weights_only=True)
    # all but the memory read, which is made for one rate: the base's (1x1x1) cannot serve 2x2x2
    assert all((got["dit_ema"][k] - w).abs().max() < 1e-6 for k, w in weights.items() if not k.startswith("memory_read."))
    assert got["dit_ema"]["memory_read.unpack"].abs().max() < 1e-6                    # a fresh read: a no-op
    assert (got["compressor_ema"]["lr_patchify.weight"] - weights["patchify.weight"]).abs().max() < 1e-6
    with pytest.raises(ConfigError, match="does not match this config"):
        train(replace(stage1, dim=64), str(tmp_path / "s1b"), quiet=True, init=str(tmp_path / "base" / "ckpt.pt"))
    assert not (tmp_path / "s1b").exists()


@pytest.fixture(scope="module")
def pca_stage1(tmp_path_factory):
    """A finished tiny stage-1 run with --latent pca (3 channels): its folder."""
    from train_pfp import train
    out = tmp_path_factory.mktemp("pca") / "s1"
    cfg = check(replace(SMALL, latent="pca", pca_channels=3, depth=1, steps=2, batch=2, train_videos=4, val_videos=2,
                        eval_every=1000, ckpt_every=1000, sample_steps=2, threads=1))
    train(cfg, str(out), quiet=True)
    return out


def test_a_pca_run_saves_the_basis_fitted_on_its_training_clips_and_reports_its_ceiling(pca_stage1):
    ckpt = torch.load(pca_stage1 / "ckpt.pt", weights_only=True)
    cfg = Config(**ckpt["config"])
    refit = Latent(cfg)
    refit.fit(synthetic_videos(range(cfg.train_videos), cfg.history, cfg.height))     # the training split
    for weights in (ckpt["dit"], ckpt["dit_ema"]):
        assert all(torch.allclose(weights[f"latent.{name}"], b, atol=1e-6) for name, b in refit.state_dict().items())
    loaded = load_checkpoint(str(pca_stage1 / "ckpt.pt"))[1].latent.state_dict()      # back, exactly
    assert loaded.keys() == refit.state_dict().keys() and all(torch.equal(b, ckpt["dit_ema"][f"latent.{n}"]) for n, b in loaded.items())
    val = synthetic_videos(range(VAL_SEED_OFFSET, VAL_SEED_OFFSET + cfg.val_videos), cfg.history, cfg.height)
    ceiling = json.load(open(pca_stage1 / "summary.json"))["latent_ceiling_psnr"]
    assert ceiling == pytest.approx(latent_ceiling(refit, val), abs=1e-3) and 10 < ceiling < 40


def test_stages_built_on_a_pca_run_share_its_basis_and_another_latent_is_one_line(pca_stage1, tmp_path, cli):
    import train_ar
    s1 = str(pca_stage1 / "ckpt.pt")
    cfg = check(replace(Config(**torch.load(s1, weights_only=True)["config"]), steps=1, out=""))
    train_ar.train_ar(cfg, str(tmp_path / "s2"), s1, quiet=True)
    first, second = (torch.load(path, weights_only=True)["dit_ema"] for path in (s1, tmp_path / "s2" / "ckpt.pt"))
    assert all(torch.equal(first[k], second[k]) for k in first if k.startswith("latent."))
    assert json.load(open(tmp_path / "s2" / "summary.json"))["latent_ceiling_psnr"] > 10
    checkpoint(SMALL, str(tmp_path / "lossless.pt"))
    with pytest.raises(ConfigError, match="its latent is lossless, this run's pca with 3 channels; .* pass --latent lossless$"):
        init_models(replace(SMALL, latent="pca", pca_channels=3), str(tmp_path / "lossless.pt"))
    code, _, err = cli("train_ar.py", "--init", s1, "--latent", "lossless", "--steps", "1", "--threads", "1", "--out", tmp_path / "s2b")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1
    assert errors[0].endswith("its latent is pca with 3 channels, this run's lossless; a run shares its base's latent: "
                              "pass --latent pca --pca_channels 3") and not (tmp_path / "s2b").exists()
