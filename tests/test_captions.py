"""dit.py's text condition c: without --captions the DiT is exactly what it was (keys, weights seed
for seed, outputs against numbers pinned before captions existed); with it, a caption changes
nothing at step 0, changes the output once the last layer has learned, keeps word order, and the
context cache still equals the joint pass. Caption dropout drops about p of the samples.

    python -m pytest tests/test_captions.py -q
"""
import hashlib
from dataclasses import replace

import pytest
import torch

from config import Config, check
from dit import DiT, drop_captions
from config import CAPTION_LENGTH, CAPTION_VOCAB
from captions import VOCAB_SIZE, encode_caption

SMALL = check(Config(dim=32, depth=2, heads=2, history=8))


def perturbed(dit: DiT, seed: int = 1) -> torch.Generator:
    """Move every weight the DiT had before captions by small noise (a non-zero output, as after
    training), in a fixed order; -> the generator, to draw the inputs from next."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if not name.startswith("caption_encoder."):
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return g


def inputs(g: torch.Generator, dim: int = 32, frames: int = 3) -> tuple:
    x = torch.randn(2, frames, 12, 16, 16, generator=g)
    t = torch.rand(2, frames, generator=g)
    frame_pos = torch.tensor([[1, 4, 7], [0, 2, 5]])[:, :frames]
    memory = torch.randn(2, 5, dim, generator=g)
    memory_pos = torch.rand(5, 3, generator=g) * 4
    return x, t, frame_pos, memory, memory_pos


def captions(frames: int = 3) -> torch.Tensor:
    """(2, F, L): two stories' per-frame captions, one with a cut."""
    a, b = encode_caption("red stripes, blue disc"), encode_caption("green dots, white cross")
    return torch.stack([torch.stack([a] * frames), torch.stack([a] + [b] * (frames - 1))])


def test_without_captions_the_dit_is_exactly_as_before():
    """Numbers pinned with dit.py as it was before captions and the memory read existed (the same
    seeds and steps): without them the state_dict keys, the initial weights and the outputs are
    unchanged, and the read is drawn after every other weight, so it changes none of them."""
    torch.manual_seed(0)
    dit = DiT(replace(SMALL, memory_read=False))
    keys = list(dit.state_dict())
    assert len(keys) == 40 and hashlib.sha256(" ".join(keys).encode()).hexdigest()[:16] == "bdaa27df476620be"
    assert abs(sum(p.double().abs().sum().item() for p in dit.parameters()) - 3649.622440421904) < 1e-6
    v = dit(*inputs(perturbed(dit)))
    assert abs(v.double().sum().item() - 921.0339914592914) < 1e-3
    assert abs(v.double().abs().sum().item() - 4226.576544731855) < 1e-3
    assert torch.allclose(v[0, 0, 0, 0, :4], torch.tensor([0.204961, 0.477949, 0.127315, 0.557972]), atol=1e-5)
    assert torch.allclose(v[1, 2, 5, 3, :4], torch.tensor([-0.038013, 0.323811, -0.302209, 0.141577]), atol=1e-5)
    with pytest.raises(AssertionError, match="captions"):
        dit(*inputs(torch.Generator().manual_seed(2)), caption=captions())
    torch.manual_seed(0)
    with_read = DiT(SMALL).state_dict()                              # the default: the memory read on
    torch.manual_seed(0)
    without = DiT(replace(SMALL, memory_read=False)).state_dict()
    assert all(torch.equal(with_read[k], w) for k, w in without.items())


def test_at_step_zero_a_caption_changes_nothing():
    """Same seed: the weights both models share are equal, and with the caption encoder at its
    initialisation any caption, or none, gives exactly the output of the DiT without captions."""
    torch.manual_seed(0)
    plain = DiT(SMALL)
    torch.manual_seed(0)
    captioned = DiT(replace(SMALL, captions=True))
    shared = plain.state_dict()
    extra = [k for k in captioned.state_dict() if k not in shared]
    assert extra and all(k.startswith("caption_encoder.") for k in extra)
    assert all(torch.equal(captioned.state_dict()[k], v) for k, v in shared.items())   # seed for seed
    perturbed(plain), perturbed(captioned)
    args = inputs(torch.Generator().manual_seed(2))
    expected = plain(*args)
    assert torch.equal(captioned(*args), expected)
    assert torch.equal(captioned(*args, caption=captions()), expected)
    # a DiT trained without captions loads into one with them (the base model of later work)
    fresh = DiT(replace(SMALL, captions=True))
    missing, unexpected = fresh.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and set(missing) == set(extra)
    assert torch.equal(fresh(*args, caption=captions()), expected)


def test_a_caption_changes_the_output_once_the_last_layer_has_learned():
    torch.manual_seed(0)
    dit = DiT(replace(SMALL, captions=True))
    g = perturbed(dit)
    torch.nn.init.normal_(dit.caption_encoder.mlp[-1].weight, std=0.1, generator=g)
    args = inputs(g)
    with_caption, without = dit(*args, caption=captions()), dit(*args)
    assert (with_caption - without).abs().max() > 1e-2
    null = torch.zeros(2, 3, CAPTION_LENGTH, dtype=torch.long)
    assert torch.equal(dit(*args, caption=null), without)               # no caption = the all-padding caption
    swapped = captions()
    swapped[:, :, :4] = encode_caption("blue stripes, red disc")[:4]    # the same words, other roles
    assert (dit(*args, caption=swapped) - with_caption).abs().max() > 1e-3


def test_the_caption_encoder_learns_from_step_zero():
    torch.manual_seed(0)
    dit = DiT(replace(SMALL, captions=True))
    args = inputs(perturbed(dit))
    dit(*args, caption=captions()).square().mean().backward()
    assert dit.caption_encoder.mlp[-1].weight.grad.abs().max() > 0      # the zero layer gets a gradient
    assert dit.caption_encoder.words.weight.shape[0] == CAPTION_VOCAB >= VOCAB_SIZE


@pytest.mark.parametrize("cross_attn", [False, True])
def test_context_cache_equals_masked_joint_pass_with_captions(cross_attn):
    """As tests/test_scale.py checks the cache without captions: a caption is a noisy frame's, so the
    memory's cached keys and values hold none, and the cached pass still equals the joint one."""
    cfg = replace(SMALL, context_cache=True, cross_attn=cross_attn, captions=True)
    torch.manual_seed(0)
    dit = DiT(cfg)
    perturbed(dit)                                                       # a non-zero output that reads t
    torch.nn.init.normal_(dit.caption_encoder.mlp[-1].weight, std=0.1)  # ... and the caption
    x, memory, memory_pos = torch.randn(2, 3, 12, 16, 16), torch.randn(2, 40, 32), torch.rand(40, 3) * 8
    cache = dit.memory_keys_values(memory, memory_pos)
    for t in (0.9, 0.3):
        args = (x, torch.full((2, 3), t), torch.tensor([[1, 5, 9]] * 2), memory, memory_pos)
        assert torch.allclose(dit.forward_cached(*args, cache, captions()), dit(*args, caption=captions()), atol=1e-5)
        assert torch.allclose(dit.forward_cached(*args, cache), dit(*args), atol=1e-5)
    assert (dit.forward_cached(*args, cache, captions()) - dit.forward_cached(*args, cache)).abs().max() > 1e-3


def test_drop_captions_drops_about_p_of_the_samples():
    caption = torch.randint(1, VOCAB_SIZE, (4000, 3, CAPTION_LENGTH))
    dropped = drop_captions(caption, 0.3, torch.Generator().manual_seed(0))
    gone = (dropped == 0).all(dim=(1, 2))                               # (B,) whole samples
    kept = (dropped == caption).all(dim=(1, 2))
    assert (gone | kept).all() and abs(gone.float().mean().item() - 0.3) < 0.03
    assert torch.equal(dropped, drop_captions(caption, 0.3, torch.Generator().manual_seed(0)))   # seeded
    assert torch.equal(drop_captions(caption, 0.0), caption) and (drop_captions(caption, 1.0) == 0).all()


# --- [ours] --memory_captions: memory tokens carry their own frame's caption ---------------------
def memory_captions(tokens: int = 5) -> torch.Tensor:
    """(2, M, L): the caption of each memory token's frame, a cut halfway."""
    a, b = encode_caption("red stripes, blue disc"), encode_caption("green dots, white cross")
    return torch.stack([torch.stack([a] * tokens), torch.stack([a] * (tokens // 2) + [b] * (tokens - tokens // 2))])


def test_memory_captions_start_as_no_op_then_change_what_memory_says():
    """A DiT trained with captions loads into one with --memory_captions and computes exactly what
    it did; once the new layer has learned, a memory token's caption changes the output, and the
    gradient reaches that layer from step zero."""
    torch.manual_seed(0)
    plain = DiT(replace(SMALL, captions=True))
    args = inputs(perturbed(plain))
    torch.nn.init.normal_(plain.caption_encoder.mlp[-1].weight, std=0.1)
    with_memory = DiT(replace(SMALL, captions=True, memory_captions=True))
    missing, unexpected = with_memory.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["memory_caption.bias", "memory_caption.weight"]
    expected = plain(*args, caption=captions())
    assert torch.equal(with_memory(*args, caption=captions(), memory_caption=memory_captions()), expected)
    with_memory(*args, caption=captions(), memory_caption=memory_captions()).square().mean().backward()
    assert with_memory.memory_caption.weight.grad.abs().max() > 0
    torch.nn.init.normal_(with_memory.memory_caption.weight, std=0.1)
    swapped = memory_captions().flip(0)
    changed = with_memory(*args, caption=captions(), memory_caption=swapped) - with_memory(*args, caption=captions(),
                                                                                          memory_caption=memory_captions())
    assert changed.abs().max() > 1e-3
    null = torch.zeros_like(memory_captions())                          # no memory captions = the null caption
    assert torch.equal(with_memory(*args, caption=captions()), with_memory(*args, caption=captions(), memory_caption=null))


def test_context_cache_holds_the_memory_captions():
    cfg = replace(SMALL, context_cache=True, captions=True, memory_captions=True)
    torch.manual_seed(0)
    dit = DiT(cfg)
    perturbed(dit)
    torch.nn.init.normal_(dit.caption_encoder.mlp[-1].weight, std=0.1)
    torch.nn.init.normal_(dit.memory_caption.weight, std=0.1)
    x, memory, memory_pos = torch.randn(2, 3, 12, 16, 16), torch.randn(2, 5, 32), torch.rand(5, 3) * 8
    args = (x, torch.full((2, 3), 0.6), torch.tensor([[1, 5, 9]] * 2), memory, memory_pos)
    cache = dit.memory_keys_values(memory, memory_pos, memory_captions())
    assert torch.allclose(dit.forward_cached(*args, cache, captions()),
                          dit(*args, caption=captions(), memory_caption=memory_captions()), atol=1e-5)


@pytest.mark.parametrize("rate, window", [("1x1x1", 2), ("2x2x2", 2), ("2x2x2", 0)])
def test_each_context_token_takes_the_caption_of_its_frame(rate, window):
    """ar_context's memory tokens and window tokens, at every split point: the caption each gets is
    the one of the history frame it summarises (a 2-frame token: the first of its two)."""
    from compressor import Compressor
    from sample import ar_context, context_captions
    cfg = check(replace(SMALL, compressor="only_lr", rate=rate, window=window, captions=True, memory_captions=True))
    dit, phi = DiT(cfg), Compressor(cfg)
    video = torch.rand(1, cfg.history + cfg.chunk, 3, cfg.height, cfg.width) * 2 - 1
    frames = torch.arange(cfg.latent_frames + cfg.chunk)                       # a caption id per frame: its index
    captions = torch.zeros(1, len(frames), CAPTION_LENGTH, dtype=torch.long)
    captions[0, :, 0] = frames + 1
    per_frame = cfg.token_grid[1] * cfg.token_grid[2]
    rt = cfg.rate_hwt[2]
    for s in range(rt, cfg.latent_frames + 1, rt):
        _, pos = ar_context(dit, phi, video, s, cfg)
        got = context_captions(captions, pos, s, cfg)[0, :, 0] - 1             # (N,) the frame each token read
        memory = per_frame // (cfg.rate_hwt[0] * cfg.rate_hwt[1]) * (s // rt)  # memory tokens, then the window's
        first = torch.arange(0, s, rt).repeat_interleave(memory // (s // rt))  # memory: frame-major groups
        w = min(window, s)
        recent = torch.arange(s - w, s).repeat_interleave(per_frame)
        assert torch.equal(got, torch.cat([first, recent])), (rate, s)


def test_memory_captions_need_captions():
    from config import ConfigError
    with pytest.raises(ConfigError, match="--memory_captions true .* needs --captions true"):
        check(replace(SMALL, memory_captions=True))
