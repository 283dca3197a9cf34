"""Sampling from trained models: retrieval (stage 1) and autoregressive generation (stage 2).

Retrieval, "show me frame i of this history" (docs/paper.md, "Equations", stage 1): phi compresses the whole
history once; the DiT samples the requested frames from pure noise with the Euler sampler,
seeing only the memory tokens and the frames' time positions. PSNR/SSIM against the true
frames is the paper's Table 1 metric.

Generation (docs/paper.md, "Equations", stage 2): from a prompt clip, each chunk re-compresses the *whole*
history so far with phi, keeps its last --window latent frames uncompressed beside it
(`ar_context`), and samples the next --chunk latent frames.

    python sample.py --ckpt runs/pfp_2x2x2/ckpt.pt --retrieve                   # a validation seed
    python sample.py --ckpt runs/pfp_2x2x2/ckpt.pt --retrieve --video ../shared/videos/cockatoo.mp4 --frames 0 5 10 15
    python sample.py --ckpt runs/ar_pfp_2x2x2_w2_init/ckpt.pt --generate --chunks 16   # a train_ar.py run

Writes <out>/retrieve.png (truth above retrieved) and retrieve.gif (the Euler trajectory), or
<out>/generate.mp4 and generate.gif (prompt frames framed in red, generated ones in green).

Letters: B batch, T frames, k requested frames, s split point, c chunk, M memory tokens.
"""
import argparse
import os
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from config import Config, ConfigError, fail, run_main, seed_int
from captions import format_story, latent_captions, parse_story
from checkpoint import load_checkpoint, writable_folder
from compressor import memory_positions
from data import VAL_SEED_OFFSET, synthetic_video, video_file_clips
from flow import add_noise, euler_sample
from footprint import check_fits, video_bytes
from metrics import psnr, ssim
from plot import framed_bthwc_uint8, save_bthwc_uint8_as_mp4_and_gif, save_rows_gif, save_rows_png
from storyboard import storyboard_video

SHORT_VIDEO_ADVICE = "use a longer video: the checkpoint fixes the history and frame stride"


def with_memory(dit, memory, memory_pos, cfg: Config, memory_caption=None):
    """G(x_t, t, frame_pos, caption) reading one memory (and its tokens' captions, --memory_captions).
    With --context_cache the memory's keys and values are computed once here, not at every Euler step."""
    if cfg.context_cache:
        cache = dit.memory_keys_values(memory, memory_pos, memory_caption)
        return lambda x, t, pos, caption=None: dit.forward_cached(x, t, pos, memory, memory_pos, cache, caption)
    return lambda x, t, pos, caption=None: dit(x, t, pos, memory, memory_pos, caption, memory_caption)


def retrieval_start(dit, phi, video, omega, cfg: Config, generator=None):
    """What the sampler of a retrieval starts from -> (x_1 (B, F, C, h, w), pure noise at the
    asked-for frames; velocity(x, t) with t (B,); pick(x) -> the asked-for frames (B, k, C, h, w)).
    With noise-as-mask models every frame is in the sequence, the ones not asked for as in training:
    their true latents noised to fixed levels drawn from U[mask_noise_min, 1]."""
    B, k = omega.shape
    omega = omega.to(video.device)
    latent = dit.latent.encode(video)                                        # (B, T', C, h, w)
    G = with_memory(dit, phi(video, dit.latent), memory_positions(cfg), cfg)
    shape = (B, latent.shape[1] if cfg.noise_as_mask else k, *latent.shape[2:])
    noise = torch.randn(shape, generator=generator).to(video.device)
    rows = torch.arange(B, device=video.device)[:, None]
    if not cfg.noise_as_mask:
        return noise, lambda x, t: G(x, t[:, None].expand(B, k), omega), lambda x: x
    frame_pos = torch.arange(latent.shape[1], device=video.device).expand(B, -1)   # (B, T')
    is_target = torch.zeros(B, latent.shape[1], dtype=torch.bool, device=video.device)
    is_target[rows, omega] = True
    low = cfg.mask_noise_min
    rest = low + (1 - low) * torch.rand(is_target.shape, generator=generator)   # as pfp_loss draws them
    rest = rest.to(video.device)                                              # (B, T')
    start = torch.where(is_target[:, :, None, None, None], noise, add_noise(latent, noise, rest))

    def velocity(x, t):                       # only the asked-for frames move; the rest stay put
        levels = torch.where(is_target, t[:, None], rest)
        return G(x, levels, frame_pos) * is_target[:, :, None, None, None]
    return start, velocity, lambda x: x[rows, omega]


@torch.no_grad()
def retrieve(dit, phi, video, omega, cfg: Config, generator=None, trajectory=None):
    """video (B, T, 3, H, W), omega (B, k) latent-frame indices -> retrieved pixels
    (B, k*vt, 3, H, W): one draw of the sampler, the paper's Table 1 metric."""
    start, velocity, pick = retrieval_start(dit, phi, video, omega, cfg, generator)
    x0 = euler_sample(velocity, start, cfg.sample_steps, cfg.t_shift, trajectory)
    x0 = pick(x0)                                                             # (B, k, C, h, w)
    return dit.latent.decode(x0).clamp(-1, 1)


@torch.no_grad()
def posterior_mean(dit, phi, video, omega, cfg: Config, draws: int = 4, generator=None):
    """The DiT's own estimate of E[frame | memory] -> pixels (B, k*vt, 3, H, W): its x0 prediction
    from pure noise, x_1 - v(x_1, t = 1), averaged over `draws` noises. [ours]
    A sample is one draw from the posterior and a blur is close to its mean; PSNR favours the
    mean, so this is what a reconstruction is fairly compared with (docs/paper.md)."""
    x0 = 0
    for _ in range(draws):
        start, velocity, pick = retrieval_start(dit, phi, video, omega, cfg, generator)
        ones = torch.ones(start.shape[0], device=start.device)
        x0 = x0 + pick(start - velocity(start, ones)) / draws                 # (B, k, C, h, w)
    return dit.latent.decode(x0).clamp(-1, 1)


def true_frames(video, omega, cfg: Config):
    """The pixel frames that `retrieve` is asked for: (B, k*vt, 3, H, W)."""
    B, T = video.shape[:2]
    groups = video.reshape(B, T // cfg.vae_time, cfg.vae_time, *video.shape[2:])
    return groups[torch.arange(B, device=omega.device)[:, None], omega].flatten(1, 2)


def ar_context(dit, phi, video, s: int, cfg: Config) -> tuple:
    """What the DiT may see when it predicts the chunk after split point s (in latent frames):
    phi of every frame before s, plus the last `window` latent frames before s as clean tokens.
    video (B, >= s*vt, 3, H, W) -> context (B, M + w*n, D), positions (B, M + w*n, 3).
    Only frames before s are read (tests/test_ar.py changes the rest and checks).

    Positions are counted from the present [ours]: the chunk always sits at latent frames
    T..T+c-1 (T = the stage-1 history), the history just before it, so a long rollout shows the
    DiT the same positions near the present as training did; only old memory goes negative."""
    B, vt = video.shape[0], cfg.vae_time
    history = video[:, :s * vt]                                              # (B, s*vt, 3, H, W)
    shift = torch.tensor([cfg.latent_frames - s, 0.0, 0.0], device=video.device)
    memory = phi(history, dit.latent)                                        # (B, M, D)
    memory_pos = memory_positions(replace(cfg, history=s * vt)).to(video.device) + shift   # (M, 3)
    w = min(cfg.window, s)
    if w == 0:
        return memory, memory_pos.expand(B, -1, -1)
    recent = dit.latent.encode(history[:, (s - w) * vt:])                    # (B, w, C, h, w)
    window_pos = (cfg.latent_frames - w + torch.arange(w, device=video.device)).expand(B, w)
    window, window_pos = dit.clean_tokens(recent, window_pos)                # (B, w*n, D), (B, w*n, 3)
    return torch.cat([memory, window], 1), torch.cat([memory_pos.expand(B, -1, -1), window_pos], 1)


def context_captions(captions, context_pos, s: int, cfg: Config):
    """[ours, --memory_captions] The clip's latent-frame captions (B, >= s, L) and the positions of
    ar_context's tokens (B, N, 3) -> (B, N, L): each token takes the caption of the history frame
    its centre lies in (ar_context counts from the present: frame f sits at f + T' - s)."""
    frame = (context_pos[..., 0] - (cfg.latent_frames - s) + 1e-3).floor().long().clamp(0, s - 1)   # (B, N)
    return captions[torch.arange(len(captions), device=captions.device)[:, None], frame]            # (B, N, L)


def chunk_and_context_captions(captions, context_pos, s: int, cfg: Config) -> tuple:
    """The clip's latent-frame captions (B, >= s + c, L) or None -> (the chunk's (B, c, L), the
    context tokens' (B, N, L) with --memory_captions, else None)."""
    if captions is None:
        return None, None
    chunk = captions[:, s:s + cfg.chunk]
    return chunk, context_captions(captions, context_pos, s, cfg) if cfg.memory_captions else None


def chunk_positions(batch: int, cfg: Config, device) -> torch.Tensor:
    """(B, c) latent-frame positions of the chunk being generated: right after the present."""
    return (cfg.latent_frames + torch.arange(cfg.chunk, device=device)).expand(batch, cfg.chunk)


@torch.no_grad()
def next_chunk(dit, phi, video, s: int, cfg: Config, generator=None, on_step=None, captions=None) -> tuple:
    """Sample the chunk after split point s from noise with Euler, seeing only ar_context and, with
    --captions, the clip's latent-frame captions (B, >= s + c, L): the chunk's, and with
    --memory_captions the history's. video (B, >= s*vt, 3, H, W) ->
    (chunk (B, c*vt, 3, H, W) in [-1, 1], context tokens used)."""
    B, c = video.shape[0], cfg.chunk
    context, context_pos = ar_context(dit, phi, video, s, cfg)               # (B, N_ctx, D), (B, N_ctx, 3)
    frame_pos = chunk_positions(B, cfg, video.device)
    caption, memory_caption = chunk_and_context_captions(captions, context_pos, s, cfg)
    G = with_memory(dit, context, context_pos, cfg, memory_caption)

    def velocity(x, t):
        if on_step:
            on_step()
        return G(x, t[:, None].expand(B, c), frame_pos, caption)
    shape = (B, c, cfg.latent_channels, cfg.height // cfg.vae_space, cfg.width // cfg.vae_space)
    noise = torch.randn(shape, generator=generator).to(video.device)
    x0 = euler_sample(velocity, noise, cfg.sample_steps, cfg.t_shift)       # (B, c, C, h, w)
    return dit.latent.decode(x0).clamp(-1, 1), context.shape[1]


@torch.no_grad()
def generate(dit, phi, prompt, chunks: int, cfg: Config, generator=None, progress: bool = True, story=None) -> tuple:
    """prompt (B, P, 3, H, W) -> (video (B, P + chunks*c*vt, 3, H, W), context tokens used per chunk).
    Every chunk re-compresses the whole history so far, then samples c latent frames with Euler.
    story: (B, P + chunks*c*vt, L) frame captions (--captions models), each chunk reading its own."""
    video, used = prompt, []
    steps_bar = tqdm(total=cfg.sample_steps, desc="euler steps", leave=False, disable=not progress)
    for _ in tqdm(range(chunks), desc="chunks", disable=not progress):
        steps_bar.reset()
        s = video.shape[1] // cfg.vae_time
        captions = None if story is None else latent_captions(story, cfg.vae_time)      # (B, T', L)
        chunk, n_context = next_chunk(dit, phi, video, s, cfg, generator, steps_bar.update, captions)
        video = torch.cat([video, chunk], dim=1)                             # the history grows by one chunk
        used.append(n_context)
    steps_bar.close()
    return video, used


def prompt_clip(cfg: Config, video_path: str, seed: int, frames: int, after: int) -> tuple:
    """-> (clip (1, frames, 3, H, W), its true next `after` frames or None, the true story (1, frames
    + after, L) or None): the first frames of a video file, or of validation video `seed` of the
    checkpoint's world (whose later frames are the truth; a storyboard's captions are its story)."""
    if video_path:
        return video_file_clips(video_path, frames, cfg.height, cfg.frame_stride, advice=SHORT_VIDEO_ADVICE)[:1], None, None
    if cfg.data == "storyboard":
        story = storyboard_video(VAL_SEED_OFFSET + seed, frames + after, cfg.height)
        full, captions = story["video"][None], story["captions"][None]
    else:
        full, captions = synthetic_video(VAL_SEED_OFFSET + seed, frames + after, cfg.height)[None], None
    return full[:, :frames], full[:, frames:], captions                   # (1, frames, 3, H, W), (1, after, ...)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a train_pfp.py or train_ar.py checkpoint (its config is used)")
    parser.add_argument("--retrieve", action="store_true", help="retrieve frames of a history (stage 1)")
    parser.add_argument("--generate", action="store_true", help="generate chunks after a prompt clip (stage 2)")
    parser.add_argument("--seed", type=seed_int, default=0, help="synthetic validation video number (default 0)")
    parser.add_argument("--video", default="", help="a video file to use instead of a synthetic one (first clip)")
    parser.add_argument("--frames", type=int, nargs="*", default=None,
                        help="--retrieve: latent-frame indices to retrieve (default: spread across the history)")
    parser.add_argument("--chunks", type=int, default=None, help="--generate: chunks to generate (default 16)")
    parser.add_argument("--prompt", type=int, default=0,
                        help="--generate: prompt length in frames (default: half the history; a multiple of the rate's t)")
    parser.add_argument("--story", default="",
                        help="--generate with a --captions model: the captions of every frame, prompt and generated, as "
                             "'0-8: red stripes, blue disc | 8-16: green dots, white cross | 16-24: red stripes, blue disc' "
                             "or a file holding that (default: the validation story's own captions)")
    parser.add_argument("--noise_seed", type=seed_int, default=0, help="seed of the sampler's noise, in [0, 2**63)")
    parser.add_argument("--out", default="", help="folder for the outputs (default: the checkpoint's)")
    parser.error = fail
    args = parser.parse_args()
    if args.retrieve == args.generate:
        fail("pass exactly one of --retrieve (stage 1) or --generate (stage 2)")
    if args.generate and args.frames is not None:
        fail("--frames goes with --retrieve; --generate continues the prompt (--prompt, --chunks)")
    if args.retrieve and (args.prompt or args.chunks is not None):
        fail("--prompt and --chunks go with --generate; --retrieve takes --frames")
    args.chunks = 16 if args.chunks is None else args.chunks
    out = writable_folder(args.out or os.path.dirname(os.path.abspath(args.ckpt)))    # before any work
    made = not os.path.isdir(out)
    os.makedirs(out, exist_ok=True)
    try:
        sample_into(out, args)
    finally:
        if made and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)                          # a failed run leaves no empty folder


def sample_into(out: str, args):
    """The work of main, once --out is a folder we can write: retrieve or generate into it."""
    cfg, dit, phi, stage = load_checkpoint(args.ckpt)
    if args.generate:
        step = cfg.vae_time * cfg.rate_hwt[2]                 # history lengths phi can pool exactly
        prompt_frames = args.prompt or cfg.history // 2 // step * step
        if prompt_frames < step or prompt_frames % step or args.chunks < 1:
            raise ConfigError(f"--prompt must be a positive multiple of {step} frames and --chunks >= 1")
        after = args.chunks * cfg.chunk * cfg.vae_time
        check_fits(cfg, f"--chunks {args.chunks} ({prompt_frames + after:,} frames of {cfg.height}x{cfg.width}, "
                   f"with the truth and the pictures)", video_bytes(6, prompt_frames + after, cfg))
        video, truth, story = prompt_clip(cfg, args.video, args.seed, prompt_frames, after)
        if args.story and not cfg.captions:
            raise ConfigError(f"--story: {args.ckpt} was trained without captions (--captions false); drop --story")
        story = parse_story(args.story, prompt_frames + after)[None] if args.story else story   # (1, T, L)
        story = story if cfg.captions else None
    elif args.story:
        raise ConfigError("--story goes with --generate")
    elif args.video:
        video = video_file_clips(args.video, cfg.history, cfg.height, cfg.frame_stride, advice=SHORT_VIDEO_ADVICE)[:1]
    else:
        world = (lambda *a: storyboard_video(*a)["video"]) if cfg.data == "storyboard" else synthetic_video
        video = world(VAL_SEED_OFFSET + args.seed, cfg.history, cfg.height)[None]           # (1, T, 3, H, W)
    T = cfg.latent_frames
    frames = args.frames or np.linspace(0, T - 1, min(8, T)).round().astype(int).tolist()
    if args.retrieve and not all(0 <= f < T for f in frames):
        raise ConfigError(f"--frames must lie in [0, {T - 1}], the latent frames of the history")
    generator = torch.Generator().manual_seed(args.noise_seed)
    if args.generate:
        if stage != 2:
            print(f"warning: {args.ckpt} is a stage-1 (retrieval) checkpoint; it was never trained to continue a "
                  f"video, so expect poor chunks: fine-tune it with train_ar.py --init {args.ckpt}")
        if story is not None:
            print(f"story: {format_story(story[0])}")
        made, used = generate(dit, phi, video, args.chunks, cfg, generator, story=story)
        for i, n in enumerate(used):
            print(f"chunk {i + 1:>3}: history {prompt_frames + i * cfg.chunk * cfg.vae_time:>4} frames -> {n} context tokens")
        shown = made if truth is None else torch.cat([made, torch.cat([video, truth], 1)])   # (1 or 2, T, 3, H, W)
        save_bthwc_uint8_as_mp4_and_gif(framed_bthwc_uint8(shown, prompt_frames), os.path.join(out, "generate"))
        print(f"wrote {out}/generate.mp4 and {out}/generate.gif ({prompt_frames} prompt frames framed red"
              + ("" if truth is None else "; top: generated, bottom: the true continuation") + ")")
        return
    omega = torch.tensor(frames)[None]                                      # (1, k)
    trajectory = []
    got = retrieve(dit, phi, video, omega, cfg, generator, trajectory)[0]
    truth = true_frames(video, omega, cfg)[0]
    save_rows_png([truth, got], os.path.join(out, "retrieve.png"))
    steps = [dit.latent.decode(x)[0].clamp(-1, 1) for x in trajectory]
    if cfg.noise_as_mask:
        steps = [s.reshape(T, cfg.vae_time, *s.shape[1:])[omega[0]].flatten(0, 1) for s in steps]
    save_rows_gif([[truth, s] for s in steps] + [[truth, got]] * 8, os.path.join(out, "retrieve.gif"))
    print(f"{cfg.compressor} at {cfg.rate}: {phi(video, dit.latent).shape[1]} memory tokens for {cfg.history} frames")
    for f, p, s in zip(frames, psnr(got, truth).tolist(), ssim(got, truth).tolist()):
        print(f"  frame {f:>3}: PSNR {p:5.2f} dB  SSIM {s:.3f}")
    print(f"  mean     : PSNR {psnr(got, truth).mean():5.2f} dB  SSIM {ssim(got, truth).mean():.3f}")
    print(f"wrote {out}/retrieve.png and {out}/retrieve.gif")


if __name__ == "__main__":
    run_main(main)
