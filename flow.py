"""Flow matching, the objective of both stages (docs/paper.md, "Equations").

Time convention, everywhere in pfp-mini: t = 1 is pure noise, t = 0 is data.
    x_t = (1 - t) * x_0 + t * eps          the straight path from data to noise
    v   = eps - x_0                        the velocity the network predicts (dx_t / dt)
Sampling integrates dx/dt = v from t = 1 down to t = 0 with Euler steps.

    python flow.py       # demo: an exact velocity field carries noise to the data point
"""
import torch


def add_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t eps; t broadcasts from the left (shape (B,) or (B, F) for (B, F, ...))."""
    t = t.reshape(*t.shape, *([1] * (x0.dim() - t.dim())))
    return (1 - t) * x0 + t * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return eps - x0


def sample_t(n: int, mean: float = 0.0, std: float = 1.0, shift: float = 1.0, generator=None) -> torch.Tensor:
    """Logit-normal times (SD3): most training where the denoising is hardest, none at exactly 0 or 1.
    shift > 1 moves mass toward noise: t' = shift t / (1 + (shift - 1) t)."""
    t = torch.sigmoid(mean + std * torch.randn(n, generator=generator))
    return shift * t / (1 + (shift - 1) * t)


def sampling_times(steps: int, shift: float = 1.0) -> torch.Tensor:
    """steps + 1 times from 1 (noise) to 0 (data), with the same shift as training."""
    t = torch.linspace(1, 0, steps + 1)
    return shift * t / (1 + (shift - 1) * t)


@torch.no_grad()
def euler_sample(velocity_fn, noise: torch.Tensor, steps: int, shift: float = 1.0, trajectory: list = None) -> torch.Tensor:
    """Integrate from x_1 = noise to x_0. velocity_fn(x_t, t) takes t of shape (B,).
    If `trajectory` is a list, each intermediate x_t is appended (for a GIF of the sampling)."""
    x = noise
    times = sampling_times(steps, shift).to(noise.device)
    for t_now, t_next in zip(times[:-1], times[1:]):
        v = velocity_fn(x, t_now.expand(x.shape[0]))
        x = x + (t_next - t_now) * v                       # t decreases, so this walks toward data
        if trajectory is not None:
            trajectory.append(x)
    return x


def loss_per_t_bin(sq_err: torch.Tensor, t: torch.Tensor, bins: int = 4) -> dict:
    """Mean loss per t-bin ("t0.00-0.25": ...), for logging where in time the model struggles (minRF)."""
    idx = (t * bins).long().clamp(max=bins - 1)
    return {f"t{b / bins:.2f}-{(b + 1) / bins:.2f}": sq_err[idx == b].mean().item()
            for b in range(bins) if (idx == b).any()}


if __name__ == "__main__":
    x0 = torch.randn(4, 8)
    exact = lambda x, t: (x - x0) / t.clamp(min=1e-6)[:, None]   # the true velocity toward x0
    x = euler_sample(exact, torch.randn(4, 8), steps=8)
    print("Euler with the exact field lands on the data:", torch.allclose(x, x0, atol=1e-5))
    t = sample_t(10_000)
    print(f"logit-normal t: mean {t.mean():.3f}, min {t.min():.3f}, max {t.max():.3f}")
