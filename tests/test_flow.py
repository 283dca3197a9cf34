"""flow.py: the path, the target and the sampler in closed form; t = 1 is noise. latent.py: the
lossless latent is exact, the pca latent is the best rank-K linear one (closed forms)."""
import pytest
import torch

from config import Config
from data import synthetic_videos
from flow import add_noise, velocity_target, sample_t, sampling_times, euler_sample, loss_per_t_bin
from latent import Latent, cell_sums, encode, decode


def test_time_convention_t1_noise_t0_data():
    x0, eps = torch.randn(3, 5), torch.randn(3, 5)
    assert torch.equal(add_noise(x0, eps, torch.zeros(3)), x0)
    assert torch.equal(add_noise(x0, eps, torch.ones(3)), eps)
    assert torch.allclose(sampling_times(10)[[0, -1]], torch.tensor([1.0, 0.0]))


def test_velocity_is_the_time_derivative_of_the_path():
    x0, eps, t, dt = torch.randn(4, 6), torch.randn(4, 6), torch.rand(4) * 0.8 + 0.1, 1e-3
    finite_difference = (add_noise(x0, eps, t + dt) - add_noise(x0, eps, t - dt)) / (2 * dt)
    assert torch.allclose(finite_difference, velocity_target(x0, eps), atol=1e-3)


def test_add_noise_broadcasts_per_frame_times():
    x0, eps = torch.randn(2, 3, 4, 5, 5), torch.randn(2, 3, 4, 5, 5)
    t = torch.rand(2, 3)
    expected = (1 - t[..., None, None, None]) * x0 + t[..., None, None, None] * eps
    assert torch.allclose(add_noise(x0, eps, t), expected)


def test_euler_with_the_exact_velocity_reaches_the_data():
    x0 = torch.randn(5, 7)
    exact = lambda x, t: (x - x0) / t[:, None]     # on the straight path, v = (x_t - x0) / t
    assert torch.allclose(euler_sample(exact, torch.randn(5, 7), steps=4, shift=3.0), x0, atol=1e-5)


def test_constant_velocity_moves_noise_by_exactly_minus_v():
    v = torch.randn(2, 3)
    x = euler_sample(lambda x, t: v.expand_as(x), torch.zeros(2, 3), steps=7)
    assert torch.allclose(x, -v, atol=1e-6)


def test_timesteps_are_inside_the_unit_interval_and_shift_moves_them_toward_noise():
    g = torch.Generator().manual_seed(0)
    t1, t3 = sample_t(10_000, generator=g), sample_t(10_000, shift=3.0, generator=torch.Generator().manual_seed(0))
    assert 0 < t1.min() and t1.max() < 1
    assert abs(t1.mean() - 0.5) < 0.02 and t3.mean() > t1.mean() + 0.1
    assert (t3 >= t1).all()                          # the shift is monotone, sample by sample


def test_loss_per_t_bin_averages_inside_each_bin():
    bins = loss_per_t_bin(torch.tensor([1.0, 3.0, 10.0]), torch.tensor([0.1, 0.2, 0.9]), bins=4)
    assert bins == {"t0.00-0.25": 2.0, "t0.75-1.00": 10.0}


def test_latent_stand_in_is_lossless_and_unit_scale():
    video = torch.rand(2, 8, 3, 16, 16) * 2 - 1
    for vs, vt in [(1, 1), (2, 1), (4, 2)]:
        z = encode(video, vs, vt)
        assert z.shape == (2, 8 // vt, 3 * vs * vs * vt, 16 // vs, 16 // vs)
        assert torch.equal(decode(z, vs, vt), video)
    # a latent cell holds the pixels of its own block: cell (0, 0) of frame 0 is pixels [0:2, 0:2]
    z = encode(video, 2, 1)
    assert torch.allclose(z[0, 0, :, 0, 0].sort().values, (video[0, 0, :, :2, :2] * 2).flatten().sort().values)


def fitted_pca(clips, **sizes) -> Latent:
    latent = Latent(Config(latent="pca", **sizes))
    latent.fit(clips)
    return latent


def test_the_lossless_latent_is_encode_and_decode_exactly():
    video = torch.rand(2, 8, 3, 16, 16) * 2 - 1
    latent = Latent(Config(vae_space=4, vae_time=2))
    assert torch.equal(latent.encode(video), encode(video, 4, 2)) and torch.equal(latent.decode(latent.encode(video)), video)
    assert len(latent.state_dict()) == 0                     # no basis: old checkpoints load unchanged


@pytest.mark.parametrize("vs, vt", [(2, 1), (2, 2)])
def test_pca_with_every_channel_round_trips_and_each_channel_has_unit_variance(vs, vt):
    clips = torch.rand(3, 8, 3, 16, 16) * 2 - 1
    latent = fitted_pca(clips, vae_space=vs, vae_time=vt, pca_channels=3 * vs * vs * vt)
    z = latent.encode(clips)                                 # (3, 8/vt, P, h, w)
    assert (latent.decode(z) - clips).abs().max() < 1e-5     # float precision
    assert torch.allclose(z.var(dim=(0, 1, 3, 4), correction=0), torch.ones(z.shape[2]), atol=1e-3)   # whitened
    flat = fitted_pca(torch.zeros(1, 2, 3, 16, 16), pca_channels=4)   # no variance at all: no blow-up
    assert torch.isfinite(flat.encoder).all() and flat.decode(flat.encode(torch.zeros(1, 2, 3, 16, 16))).abs().max() < 1e-6


def test_pca_fitted_on_the_sums_of_two_parts_is_the_pca_of_the_whole():
    """What lets torchrun's processes fit one basis from the clips each holds (training.fit_latent)."""
    clips = synthetic_videos(range(4), 8, 32)
    pooled = Latent(Config(latent="pca", pca_channels=4))
    pooled.fit_sums(*(a + b for a, b in zip(cell_sums(clips[:1], 2, 1), cell_sums(clips[1:], 2, 1))))
    whole = fitted_pca(clips, pca_channels=4)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(pooled.buffers(), whole.buffers()))


@pytest.mark.parametrize("K", [1, 3, 6])
def test_pca_is_the_best_rank_k_linear_reconstruction(K):
    """On the clips it was fitted on, decode(encode(x)) misses each cell by exactly the variance of
    the P - K components it drops (Eckart-Young): the smallest error any rank-K affine map can have;
    a random rank-K projection does worse."""
    clips = synthetic_videos(range(4), 8, 32)                            # (4, 8, 3, 32, 32)
    latent = fitted_pca(clips, pca_channels=K)
    cells = encode(clips, 2, 1).movedim(2, -1).reshape(-1, 12).double()  # (cells, P) in latent units
    eigenvalues = torch.linalg.eigvalsh(torch.cov(cells.T, correction=0))   # ascending
    error = lambda rebuilt: (encode(rebuilt, 2, 1).movedim(2, -1).reshape(-1, 12).double() - cells).pow(2).sum(1).mean()
    assert error(latent.decode(latent.encode(clips))).item() == pytest.approx(eigenvalues[:12 - K].sum().item(), rel=1e-4)
    basis = torch.linalg.qr(torch.randn(12, K, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    centred = cells - cells.mean(0)
    assert (centred - centred @ basis @ basis.T).pow(2).sum(1).mean() > 1.2 * eigenvalues[:12 - K].sum()
