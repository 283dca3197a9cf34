"""Exercise 1, solved: the flow path, its velocity and the Euler sampler (see exercises/stubs/flow_path.py)."""
import torch

from flow import sampling_times

REPLACES = "flow"


def add_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t eps, with t broadcast from the left."""
    t = t.view(*t.shape, *[1] * (x0.dim() - t.dim()))      # (B,) -> (B, 1, ..., 1)
    # (1 - t) x0 + t eps is exact at both ends; x0 + t (eps - x0) can miss eps by a rounding error
    return (1 - t) * x0 + t * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """d/dt [(1 - t) x0 + t eps] = eps - x0: the same at every t, the path is straight."""
    return eps - x0


@torch.no_grad()
def euler_sample(velocity_fn, noise: torch.Tensor, steps: int, shift: float = 1.0, trajectory: list = None) -> torch.Tensor:
    """From t = 1 (noise) to t = 0 (data) in `steps` Euler steps."""
    times = sampling_times(steps, shift).to(noise.device)
    x = noise
    for i in range(steps):
        dt = times[i + 1] - times[i]                         # negative: we walk from noise toward data
        x = x + dt * velocity_fn(x, times[i].repeat(x.shape[0]))
        if trajectory is not None:
            trajectory.append(x)
    return x
