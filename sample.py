"""Retrieval with a trained compressor: "show me frame i of this history" (PAPER.md, stage 1).

phi compresses the whole history once; the DiT then samples the requested frames from pure
noise with the Euler sampler, seeing only the memory tokens and the frames' time positions.
The PSNR/SSIM between retrieved and true frames is the paper's Table 1 metric.

    python sample.py --ckpt runs/tiny/ckpt.pt --retrieve                       # a validation seed
    python sample.py --ckpt runs/tiny/ckpt.pt --retrieve --video ../shared/videos/cockatoo.mp4 --frames 0 5 10 15

Writes <out>/retrieve.png (truth above retrieved) and <out>/retrieve.gif (the Euler trajectory).
"""
import argparse
import os
import sys

import numpy as np
import torch
from PIL import Image

from config import Config, ConfigError, check, fail
from compressor import Compressor, memory_positions
from data import DataError, VAL_SEED_OFFSET, synthetic_video, video_file_clips
from dit import DiT
from flow import add_noise, euler_sample
from latent import encode, decode
from metrics import psnr, ssim


@torch.no_grad()
def retrieve(dit, phi, video, omega, cfg: Config, generator=None, trajectory=None):
    """video (B, T, 3, H, W), omega (B, k) latent-frame indices -> retrieved pixels (B, k*vt, 3, H, W).
    With noise-as-mask models, the frames not asked for are present as pure noise (t = 1)."""
    B, k = omega.shape
    omega = omega.to(video.device)
    latent = encode(video, cfg.vae_space, cfg.vae_time)                     # (B, T', C, h, w)
    memory, memory_pos = phi(video), memory_positions(cfg)
    shape = (B, latent.shape[1] if cfg.noise_as_mask else k, *latent.shape[2:])
    noise = torch.randn(shape, generator=generator).to(video.device)
    rows = torch.arange(B, device=video.device)[:, None]
    if cfg.noise_as_mask:
        frame_pos = torch.arange(latent.shape[1], device=video.device).expand(B, -1)   # (B, T')
        is_target = torch.zeros(B, latent.shape[1], dtype=torch.bool, device=video.device)
        is_target[rows, omega] = True

        def velocity(x, t):                       # only the asked-for frames move; the rest stay noise
            levels = torch.where(is_target, t[:, None], torch.ones_like(t[:, None]))
            return dit(x, levels, frame_pos, memory, memory_pos) * is_target[:, :, None, None, None]
        x0 = euler_sample(velocity, noise, cfg.sample_steps, cfg.t_shift, trajectory)[rows, omega]
    else:
        velocity = lambda x, t: dit(x, t[:, None].expand(B, k), omega, memory, memory_pos)
        x0 = euler_sample(velocity, noise, cfg.sample_steps, cfg.t_shift, trajectory)   # (B, k, C, h, w)
    return decode(x0, cfg.vae_space, cfg.vae_time).clamp(-1, 1)


def true_frames(video, omega, cfg: Config):
    """The pixel frames that `retrieve` is asked for: (B, k*vt, 3, H, W)."""
    B, T = video.shape[:2]
    groups = video.reshape(B, T // cfg.vae_time, cfg.vae_time, *video.shape[2:])
    return groups[torch.arange(B, device=omega.device)[:, None], omega].flatten(1, 2)


def to_uint8_hwc(frame):
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return ((frame.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def save_rows_png(rows, path, scale=4, gap=2):
    """rows: list of (N, 3, H, W) tensors -> one PNG, a row each, upscaled with nearest pixels."""
    N, _, H, W = rows[0].shape
    canvas = np.full((len(rows) * (H + gap), N * (W + gap), 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            canvas[i * (H + gap):i * (H + gap) + H, j * (W + gap):j * (W + gap) + W] = to_uint8_hwc(frame)
    image = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    write_atomically(path, lambda tmp: image.save(tmp, format="PNG"))


def save_rows_gif(frames_of_rows, path, scale=4, ms=120):
    """frames_of_rows: list over time of row-lists (as save_rows_png) -> an animated GIF."""
    images = []
    for rows in frames_of_rows:
        N, _, H, W = rows[0].shape
        strip = np.concatenate([np.concatenate([to_uint8_hwc(f) for f in row], axis=1) for row in rows], axis=0)
        images.append(Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale), Image.NEAREST))
    write_atomically(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True,
                                                       append_images=images[1:], duration=ms, loop=0))


def write_atomically(path, write):
    """write(tmp_path) then rename: an interrupted run never leaves a half-written file."""
    tmp = f"{path}.tmp"
    write(tmp)
    os.replace(tmp, path)


def load_checkpoint(path, device="cpu"):
    """-> (cfg, dit, phi) with the EMA weights; the config comes from the checkpoint itself."""
    if not os.path.isfile(path):
        raise ConfigError(f"checkpoint {path!r} not found: pass the ckpt.pt of a train_pfp.py run (runs/<name>/ckpt.pt)")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
        cfg = check(Config(**ckpt["config"]))
        dit, phi = DiT(cfg).to(device), Compressor(cfg).to(device)
        dit.load_state_dict(ckpt["dit_ema"])
        phi.load_state_dict(ckpt["compressor_ema"])
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"checkpoint {path!r} could not be read ({type(e).__name__}): it is truncated or not "
                          f"from train_pfp.py; retrain or pass another file")
    return cfg, dit.eval(), phi.eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a train_pfp.py checkpoint (its config is used)")
    parser.add_argument("--retrieve", action="store_true", help="retrieve frames of a history (stage 1)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic validation video number (default 0)")
    parser.add_argument("--video", default="", help="a video file to use instead of a synthetic one (first clip)")
    parser.add_argument("--frames", type=int, nargs="*", default=None,
                        help="latent-frame indices to retrieve (default: spread across the history)")
    parser.add_argument("--noise_seed", type=int, default=0, help="seed of the sampler's noise")
    parser.add_argument("--out", default="", help="folder for the PNG and GIF (default: the checkpoint's)")
    parser.error = fail
    args = parser.parse_args()
    if not args.retrieve:
        fail("nothing to do: pass --retrieve (generation comes with stage 2)")
    try:
        cfg, dit, phi = load_checkpoint(args.ckpt)
        if args.video:
            video = video_file_clips(args.video, cfg.history, cfg.height, cfg.frame_stride)[:1]   # (1, T, 3, H, W)
        else:
            video = synthetic_video(VAL_SEED_OFFSET + args.seed, cfg.history, cfg.height)[None]
        T = cfg.latent_frames
        frames = args.frames or np.linspace(0, T - 1, min(8, T)).round().astype(int).tolist()
        if not all(0 <= f < T for f in frames):
            raise ConfigError(f"--frames must lie in [0, {T - 1}], the latent frames of the history")
    except (ConfigError, DataError) as e:
        fail(str(e))
    omega = torch.tensor(frames)[None]                                      # (1, k)
    trajectory = []
    got = retrieve(dit, phi, video, omega, cfg, torch.Generator().manual_seed(args.noise_seed), trajectory)[0]
    truth = true_frames(video, omega, cfg)[0]
    out = args.out or os.path.dirname(os.path.abspath(args.ckpt))
    os.makedirs(out, exist_ok=True)
    save_rows_png([truth, got], os.path.join(out, "retrieve.png"))
    steps = [decode(x, cfg.vae_space, cfg.vae_time)[0].clamp(-1, 1) for x in trajectory]
    if cfg.noise_as_mask:
        steps = [s.reshape(T, cfg.vae_time, *s.shape[1:])[omega[0]].flatten(0, 1) for s in steps]
    save_rows_gif([[truth, s] for s in steps] + [[truth, got]] * 8, os.path.join(out, "retrieve.gif"))
    print(f"{cfg.compressor} at {cfg.rate}: {phi(video).shape[1]} memory tokens for {cfg.history} frames")
    for f, p, s in zip(frames, psnr(got, truth).tolist(), ssim(got, truth).tolist()):
        print(f"  frame {f:>3}: PSNR {p:5.2f} dB  SSIM {s:.3f}")
    print(f"  mean     : PSNR {psnr(got, truth).mean():5.2f} dB  SSIM {ssim(got, truth).mean():.3f}")
    print(f"wrote {out}/retrieve.png and {out}/retrieve.gif")


if __name__ == "__main__":
    main()
