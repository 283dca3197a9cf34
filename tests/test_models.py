"""dit.py and compressor.py: token counts, positions, equivalences, and that memory is used."""
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from config import Config, ConfigError, check
from compressor import Compressor, memory_grid, memory_positions, token_table
from dit import DiT
from latent import encode
from train_pfp import pfp_loss, pick_omega

VARIANTS = ["pfp", "only_lr", "without_lr", "large_patchifier", "none"]
RATES = {"1x1x1": 1024, "2x2x1": 256, "2x2x2": 128, "4x4x2": 32}   # tiny: 16 frames x 8 x 8 tokens


def video(batch=2, cfg=Config(), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, cfg.history, 3, cfg.height, cfg.width, generator=g) * 2 - 1


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rate", RATES)
def test_memory_token_count_for_every_rate_and_variant(variant, rate):
    cfg = Config(compressor=variant, rate=rate, hr_channels=4)
    memory = Compressor(cfg)(video(1, cfg))
    expected = 0 if variant == "none" else RATES[rate]
    assert memory.shape == (1, expected, cfg.dim)
    assert memory_positions(cfg).shape == (expected, 3)


def test_paper_token_counts():
    cfg = check(Config(height=480, width=832, history=480, vae_space=8, vae_time=4, rate="4x4x2"))
    assert cfg.token_grid == (120, 30, 52) and 120 * 30 * 52 == 187_200
    f, r, c = memory_grid(cfg)
    assert f * r * c == 6_240                                  # padded: 60 x 8 x 13
    assert "187,200" in token_table(cfg) and "6,240" in token_table(cfg)


@pytest.mark.parametrize("rate", ["4x4x2", "2x2x2", "2x2x1"])
def test_memory_positions_are_the_centres_of_their_patches(rate):
    cfg = Config(rate=rate)
    frames, rows, cols = cfg.token_grid
    rh, rw, rt = cfg.rate_hwt
    # independent derivation: average the (frame, row, col) of every DiT token a memory token covers
    grid = torch.stack(torch.meshgrid(torch.arange(frames), torch.arange(rows), torch.arange(cols), indexing="ij"), -1).float()
    centres = F.avg_pool3d(grid.permute(3, 0, 1, 2)[None], (rt, rh, rw))[0]       # (3, f, r, c)
    assert torch.allclose(memory_positions(cfg), centres.flatten(1).T)


def test_only_lr_at_rate_1x1x1_is_the_dits_own_patchify():
    cfg = Config(compressor="only_lr", rate="1x1x1")
    dit, phi = DiT(cfg), Compressor(cfg)
    phi.init_from_patchifier(dit.patchify.weight, dit.patchify.bias)
    x = video(2, cfg)
    tokens = dit.patchify(encode(x, cfg.vae_space, cfg.vae_time).transpose(1, 2)).flatten(2).transpose(1, 2)
    assert torch.allclose(phi(x), tokens, atol=1e-6)
    # and each token sits at its own grid position
    assert torch.equal(memory_positions(cfg)[:3], torch.tensor([[0., 0, 0], [0, 0, 1], [0, 0, 2]]))


@pytest.mark.parametrize("rate", ["2x2x2", "4x4x2", "2x2x1"])
def test_large_patchifier_starts_as_the_patchifier_of_the_pooled_latent(rate):
    """FramePack's initialisation: each patchifier weight spread over its own rt x rh x rw block
    of the big kernel, divided by the block's size, so the large patchifier at step 0 is the DiT's
    patchifier applied to the average-pooled latent. (A tiled kernel also averages, but it
    averages whole DiT patches: a different, blurrier map.)"""
    cfg = Config(compressor="large_patchifier", rate=rate)
    dit, phi = DiT(cfg), Compressor(cfg)
    phi.init_from_patchifier(dit.patchify.weight, dit.patchify.bias)
    x = video(1, cfg)
    rh, rw, rt = cfg.rate_hwt
    pooled = F.avg_pool3d(encode(x, cfg.vae_space, cfg.vae_time).transpose(1, 2), (rt, rh, rw))   # (1, C, T'/rt, h/rh, w/rw)
    expected = dit.patchify(pooled).flatten(2).transpose(1, 2)                 # (1, M, D)
    assert torch.allclose(phi(x), expected, atol=1e-5)


def test_large_patchifier_starts_equal_to_only_lr_where_pooling_commutes_with_the_latent():
    """With vae_space 1 the latent is the pixels (times 2), so pooling the latent is pooling the
    video: at step 0 the large patchifier's tokens are exactly Only LR's."""
    cfg = Config(vae_space=1, patch=4, rate="2x2x2")
    dit = DiT(cfg)
    large, only_lr = (Compressor(replace(cfg, compressor=c)) for c in ("large_patchifier", "only_lr"))
    for phi in (large, only_lr):
        phi.init_from_patchifier(dit.patchify.weight, dit.patchify.bias)
    x = video(2, cfg)
    assert torch.allclose(large(x), only_lr(x), atol=1e-5)


def test_pfp_is_the_sum_of_its_lr_and_hr_branches():
    """pfp = only_lr + without_lr, in the DiT's width (Figure 3): the branches are added."""
    torch.manual_seed(0)
    pfp = Compressor(Config(compressor="pfp"))
    only_lr, without_lr = Compressor(Config(compressor="only_lr")), Compressor(Config(compressor="without_lr"))
    only_lr.lr_patchify.load_state_dict(pfp.lr_patchify.state_dict())
    without_lr.hr.load_state_dict(pfp.hr.state_dict())
    x = video(2)
    assert torch.allclose(pfp(x), only_lr(x) + without_lr(x), atol=1e-5)
    assert (without_lr(x).abs().mean() > 1e-3)                      # the HR branch is not silent


@pytest.mark.parametrize("variant", ["pfp", "large_patchifier"])
def test_a_pca_latent_feeds_the_dit_and_lr_branch_k_channels_and_the_hr_branch_the_pixels(variant):
    """--latent pca: the DiT's patchifier and unpatchify, the LR branch and the large patchifier
    work in the K-channel latent; the HR branch reads all 3*vt*vs*vs pixel values of each cell."""
    cfg = Config(latent="pca", pca_channels=3, compressor=variant, hr_channels=4, depth=1)
    dit, phi = DiT(cfg), Compressor(cfg)
    dit.latent.fit(video(2, cfg))
    assert dit.patchify.in_channels == 3 and dit.unpatchify.out_features == 3 * cfg.patch ** 2
    seen = []
    for branch in (phi.lr_patchify, phi.large_patchify, phi.hr):
        if branch is not None:
            branch.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[1]))
    memory = phi(video(1, cfg), dit.latent)
    assert memory.shape == (1, 128, cfg.dim)
    assert seen == ([3, 12] if variant == "pfp" else [3])          # LR: K channels; HR: the 12 of a 2x2 pixel block
    with pytest.raises(AssertionError, match="dit.latent"):         # a pca phi never falls back to the lossless latent
        phi(video(1, cfg))


def test_dit_with_empty_memory_and_shapes():
    cfg = Config()
    dit = DiT(cfg)
    x = torch.randn(3, 2, cfg.latent_channels, 16, 16)
    v = dit(x, torch.rand(3, 2), torch.tensor([[0, 5]] * 3), torch.zeros(3, 0, cfg.dim), torch.zeros(0, 3))
    assert v.shape == x.shape


def trained_a_little(cfg, steps=3):
    torch.manual_seed(0)
    dit, phi = DiT(cfg), Compressor(cfg)
    phi.init_from_patchifier(dit.patchify.weight, dit.patchify.bias)
    opt = torch.optim.Adam(list(dit.parameters()) + list(phi.parameters()), lr=1e-3)
    x = video(2, cfg)
    for _ in range(steps):      # the output layer starts at zero: a few steps make it speak
        loss = pfp_loss(dit, phi, x, cfg)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return dit, phi


@pytest.mark.parametrize("cross_attn", [False, True])
def test_dit_output_depends_on_the_memory(cross_attn):
    cfg = Config(cross_attn=cross_attn, depth=2)
    dit, phi = trained_a_little(cfg)
    x, omega = torch.randn(1, 2, cfg.latent_channels, 16, 16), torch.tensor([[1, 9]])
    memory, pos = phi(video(1, cfg, seed=1)), memory_positions(cfg)
    v1 = dit(x, torch.full((1, 2), 0.5), omega, memory, pos)
    v2 = dit(x, torch.full((1, 2), 0.5), omega, memory + torch.randn_like(memory), pos)
    assert (v1 - v2).abs().mean() > 1e-4


def test_noisy_frames_do_not_depend_on_each_others_order_only_on_positions():
    """Permuting the target frames together with their positions permutes the output."""
    cfg = Config(depth=2)
    dit, phi = trained_a_little(cfg)
    x = torch.randn(1, 2, cfg.latent_channels, 16, 16)
    memory, pos = phi(video(1, cfg)), memory_positions(cfg)
    t = torch.tensor([[0.3, 0.7]])
    v = dit(x, t, torch.tensor([[2, 11]]), memory, pos)
    v_swapped = dit(x.flip(1), t.flip(1), torch.tensor([[11, 2]]), memory, pos)
    assert torch.allclose(v, v_swapped.flip(1), atol=1e-5)


def test_same_seed_same_loss_and_different_seed_different_loss():
    cfg = Config(depth=1)
    losses = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        dit, phi = DiT(cfg), Compressor(cfg)
        losses.append(pfp_loss(dit, phi, video(2, cfg), cfg)[0].item())
    assert losses[0] == losses[1] and losses[0] != losses[2]


def test_omega_random_covers_the_history_and_last_is_the_end():
    cfg = Config()
    omega = pick_omega(4000, cfg, torch.Generator().manual_seed(0))
    counts = torch.bincount(omega.flatten(), minlength=16).float()
    assert (omega[:, 0] < omega[:, 1]).all()                         # distinct and sorted
    assert counts.min() > 0.8 * counts.mean()                        # uniform over all 16 frames
    assert torch.equal(pick_omega(3, Config(omega="last")), torch.tensor([[14, 15]] * 3))


def test_noise_as_mask_variant_trains():
    cfg = Config(noise_as_mask=True, depth=1)
    dit, phi = DiT(cfg), Compressor(cfg)
    loss = pfp_loss(dit, phi, video(2, cfg), cfg)[0]
    loss.backward()
    assert torch.isfinite(loss) and dit.unpatchify.weight.grad.abs().sum() > 0   # output starts at zero


def test_noise_as_mask_retrieval_masks_the_other_frames_as_training_does(monkeypatch):
    """Retrieval gives the frames not asked for what pfp_loss gives them: their true latents, noised
    to fixed levels in [mask_noise_min, 1]; the asked-for frames start as pure noise and move."""
    import sample
    cfg = Config(noise_as_mask=True, depth=1, sample_steps=3)
    x, omega = video(2, cfg), torch.tensor([[1, 6], [0, 15]])
    latent, seen = encode(x, cfg.vae_space, cfg.vae_time), []

    def spy(dit, memory, memory_pos, cfg):
        def G(x_t, levels, frame_pos):
            seen.append((x_t.clone(), levels.clone()))
            return torch.zeros_like(x_t)
        return G
    monkeypatch.setattr(sample, "with_memory", spy)
    sample.retrieve(DiT(cfg), Compressor(cfg), x, omega, cfg, torch.Generator().manual_seed(0))
    target = torch.zeros(2, 16, dtype=torch.bool)
    target[torch.arange(2)[:, None], omega] = True
    first_x, first_levels = seen[0]
    rest = first_levels[~target]
    assert (rest >= cfg.mask_noise_min).all() and (rest <= 1).all() and rest.std() > 0.1
    assert torch.allclose(first_levels[target], torch.ones(4))       # targets start at t = 1
    for x_t, levels in seen:                                         # the rest are the same at every step
        assert torch.equal(levels[~target], rest) and torch.equal(x_t[~target], first_x[~target])
    eps = (first_x[~target] - (1 - rest[:, None, None, None]) * latent[~target]) / rest[:, None, None, None]
    assert eps.std().item() == pytest.approx(1, abs=0.1)              # truth plus unit noise: x_t = (1-t) x0 + t eps


@pytest.mark.parametrize("bad, message", [
    (dict(rate="4x4"), "HxWxT"),
    (dict(compressor="big"), "unknown --compressor"),
    (dict(height=30), "multiples"),
    (dict(targets=17), "--targets"),
    (dict(latent="pca", pca_channels=13), "--pca_channels"),
    (dict(latent="vae"), "unknown --latent"),
])
def test_bad_configs_say_what_is_wrong(bad, message):
    with pytest.raises(ConfigError, match=message):
        check(Config(**bad))


def test_dit_lr_scale_adapts_the_dit_at_a_share_of_the_rate():
    """--dit_lr_scale: the DiT's group runs at that share of phi's rate through the whole schedule;
    at 0 one step moves phi and leaves the DiT as it was."""
    from training import make_optimizer
    cfg = Config(depth=1, dit_lr_scale=0.0, warmup=2, steps=4)
    dit, phi = DiT(cfg), Compressor(cfg)
    torch.nn.init.normal_(dit.unpatchify.weight, std=0.1)
    optimizer, schedule = make_optimizer(dit, phi, cfg)
    before = [p.detach().clone() for p in dit.parameters()], [p.detach().clone() for p in phi.parameters()]
    pfp_loss(dit, phi, video(2, cfg), cfg)[0].backward()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before[0], dit.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(before[1], phi.parameters()))
    optimizer, schedule = make_optimizer(dit, phi, replace(cfg, dit_lr_scale=0.25))
    for _ in range(4):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25 * optimizer.param_groups[1]["lr"])
        optimizer.step()
        schedule.step()


def read_token_by_token(read, tokens, token_pos, context, context_pos):
    """MemoryRead written as a loop over tokens: attend to the context of the token's own cell,
    then unpack by its place in the cell."""
    from dit import apply_rope, rope_angles
    cfg, (B, N, D), h = read.cfg, tokens.shape, read.heads
    rh, rw, _ = cfg.rate_hwt
    rope = lambda pos: [a[:, None] for a in rope_angles(pos, D // h, cfg.rope_base)]
    heads = lambda y: y.view(B, -1, h, D // h).transpose(1, 2)
    q = apply_rope(read.q_norm(heads(read.q(tokens))), *rope(token_pos))
    k, v = read.kv(context).chunk(2, -1)
    k, v = apply_rope(read.k_norm(heads(k)), *rope(context_pos)), heads(v)
    out = tokens.clone()
    for b in range(B):
        for n in range(N):
            row, col = int(token_pos[b, n, 1]), int(token_pos[b, n, 2])
            cell = [j for j in range(context.shape[1]) if int(context_pos[b, j, 1]) // rh == row // rh
                    and int(context_pos[b, j, 2]) // rw == col // rw]
            weights = (q[b, :, n:n + 1] @ k[b][:, cell].transpose(1, 2) / (D // h) ** 0.5).softmax(-1)
            out[b, n] = out[b, n] + (weights @ v[b][:, cell]).reshape(D) @ read.unpack[(row % rh) * rw + col % rw]
    return out


@pytest.mark.parametrize("size", [32, 24])            # 8x8 tokens a frame, tiled by 4x4 cells; 6x6, padded
def test_the_memory_read_is_a_read_of_each_tokens_own_cell_unpacked_by_its_place(size):
    from dit import MemoryRead
    torch.manual_seed(0)
    cfg = check(replace(Config(), rate="4x4x2", dim=32, heads=2, height=size, width=size))
    read = MemoryRead(cfg)
    torch.nn.init.normal_(read.unpack)
    dit = DiT(cfg)
    frame_pos = torch.tensor([[3, 9], [0, 15]])
    token_pos = dit.token_positions(frame_pos)                                  # (2, 2*R*C, 3)
    memory_pos = memory_positions(cfg).expand(2, -1, -1)
    tokens, memory = torch.randn(2, token_pos.shape[1], 32), torch.randn(2, memory_pos.shape[1], 32)
    out = read(tokens, token_pos, memory, memory_pos)
    assert torch.allclose(out, read_token_by_token(read, tokens, token_pos, memory, memory_pos), atol=1e-5)
    touched = memory.clone()
    touched[:, 0] += 1.0                                                        # frames 0-1, the top-left cell
    changed = (read(tokens, token_pos, touched, memory_pos) - out).abs().amax(-1) > 0   # (2, N)
    in_cell = (token_pos[..., 1] < 4) & (token_pos[..., 2] < 4)
    assert torch.equal(changed, in_cell)


def test_the_memory_read_starts_as_nothing():
    cfg = check(replace(Config(), rate="4x4x2", dim=32, heads=2))
    dit, phi, without = DiT(cfg), Compressor(cfg), DiT(replace(cfg, memory_read=False))
    torch.nn.init.normal_(dit.unpatchify.weight)                # not the zero output of step 0
    without.load_state_dict({k: v for k, v in dit.state_dict().items() if not k.startswith("memory_read.")})
    x, t = torch.randn(2, 2, cfg.latent_channels, 16, 16), torch.rand(2, 2)
    memory = phi(torch.rand(2, cfg.history, 3, 32, 32) * 2 - 1)
    args = (x, t, torch.tensor([[1, 5], [2, 8]]), memory, memory_positions(cfg))
    assert torch.allclose(dit(*args), without(*args), atol=1e-6)


@pytest.mark.parametrize("variant", ["pfp", "only_lr", "without_lr", "large_patchifier"])
def test_a_rate_that_does_not_tile_the_grid_pads_it_as_the_paper_does(variant):
    """6x6 tokens a frame (24x24 pixels) and 9 latent frames at 4x4x2: the memory grid is
    ceil(9/2) x ceil(6/4) x ceil(6/4) = 5 x 2 x 2, the count memory_grid gives, and one step trains."""
    cfg = check(replace(Config(), compressor=variant, rate="4x4x2", height=24, width=24, history=9, dim=32, heads=2,
                        hr_channels=8, targets=2))
    phi, dit = Compressor(cfg), DiT(cfg)
    video = torch.rand(2, 9, 3, 24, 24) * 2 - 1
    memory = phi(video, dit.latent)
    assert memory.shape == (2, 20, 32) and math.prod(memory_grid(cfg)) == 20 == len(memory_positions(cfg))
    loss = pfp_loss(dit, phi, video, cfg)[0]
    loss.backward()
    assert torch.isfinite(loss)
