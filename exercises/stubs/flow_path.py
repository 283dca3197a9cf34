"""Exercise 1: the flow path, its velocity and the Euler sampler (flow.py, docs/paper.md, "Equations").

Time convention: t = 1 is pure noise, t = 0 is data. Fill in the three bodies below, then run
    python exercises/check.py 1
which runs tests/test_flow.py with flow.py's functions replaced by yours.
"""
import torch

from flow import sampling_times          # for euler_sample

REPLACES = "flow"          # the module whose functions of the same names these replace


def add_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The point at time t on the straight path from data x0 (t = 0) to noise eps (t = 1).

    x0, eps: the same shape, (B, ...) or (B, F, ...); t: (B,) one time per sample, or (B, F) one
    per frame. Give t trailing singleton dimensions so it broadcasts over the rest of x0.
    Returns x_t with the shape of x0. At t = 0 it must be exactly x0 and at t = 1 exactly eps
    (the tests compare with torch.equal, so mind how you write the sum)."""
    raise NotImplementedError("write add_noise in exercises/stubs/flow_path.py")


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The velocity dx_t/dt of the path above: the network's regression target. Shape of x0."""
    raise NotImplementedError("write velocity_target in exercises/stubs/flow_path.py")


@torch.no_grad()
def euler_sample(velocity_fn, noise: torch.Tensor, steps: int, shift: float = 1.0, trajectory: list = None) -> torch.Tensor:
    """Integrate dx/dt = velocity_fn(x, t) from x = noise at t = 1 down to t = 0; return x at t = 0.

    Use the times sampling_times(steps, shift): steps + 1 values from 1 to 0. velocity_fn takes
    x (the shape of noise) and t of shape (B,) (B = noise.shape[0]), one time per sample.
    One Euler step goes from t_now to t_next; t decreases, so think about the sign of the step.
    If trajectory is a list, append each new x to it (one entry per step)."""
    raise NotImplementedError("write euler_sample in exercises/stubs/flow_path.py")
