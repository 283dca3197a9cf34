"""The cache of trained runs that the benchmarks share (evaluate.py, cut_back.py, recall.py): a
run folder per configuration. None of it is the paper's method; it is why a benchmark of many
rows can stop at any moment and go on later without training a finished row again.

- a row's folder name says what it is, and a short hash of everything that changes its result
  (the config's result fields, the checkpoint it starts from) keeps rows apart (key, folder,
  run_dir);
- made: a finished run (ckpt.pt and summary.json) is read back, a stopped one (Ctrl-C saves its
  ckpt.pt) continues exactly where it stopped, anything else in the folder is replaced.

    python evaluate.py --quick      # a second call reads every row back in seconds
"""
import hashlib
import json
import os

from config import Config, ConfigError, Interrupted, result_fields
from checkpoint import read_checkpoint


def key(parts) -> str:
    """A short hash of a JSON-able description of a run: its cache folder's suffix."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]


def folder(runs: str, name: str, cfg: Config, *extra) -> str:
    """A cache folder: its name says what it is, a hash of everything else keeps rows apart."""
    return os.path.join(runs, f"{name}_{key([result_fields(cfg), *extra])}")


def run_dir(cfg: Config, root: str, init: str = "none") -> str:
    """The cache folder of one Table 1 row: its name says what it is, the hash says everything
    else, the checkpoint it starts from (--init) included."""
    keep = result_fields(cfg, skip=("chunk", "window", "split_full"))   # stage 2's fields
    if init != "none":
        keep = [keep, init]
    data = "synthetic" if cfg.data == "synthetic" else "real"
    start = "" if init == "none" else "_from_base"
    return os.path.join(root, f"{data}_{cfg.compressor}_{cfg.rate}_{cfg.omega}_{cfg.steps}{start}_{key(keep)}")


def cached_summary(out: str):
    """The summary.json of a finished run in `out`, or None: a cache miss (no ckpt.pt beside it, or
    a summary that cannot be read back, e.g. written by hand or cut short)."""
    if not os.path.isfile(os.path.join(out, "ckpt.pt")):
        return None
    try:
        summary = json.load(open(os.path.join(out, "summary.json")))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def resumable(out: str, cfg: Config, stage: int) -> bool:
    """Does `out` hold a ckpt.pt of this very run (the same stage and result fields), which
    training.resume can continue exactly as if never stopped?"""
    path = os.path.join(out, "ckpt.pt")
    if not os.path.isfile(path):
        return False
    try:
        ckpt = read_checkpoint(path)
    except ConfigError:                              # truncated or foreign: a stale entry
        return False
    return (ckpt.get("stage", 1) == stage and "optimizer" in ckpt
            and result_fields(Config(**ckpt["config"])) == result_fields(cfg))


def train_missing(train_fn, cfg: Config, out: str, *args, stage: int = 1, **kwargs) -> dict:
    """Train a cache entry that missed with train_fn (train_pfp.train or train_ar.train_ar). A run
    stopped earlier (Ctrl-C saves its ckpt.pt) continues where it stopped; anything else in `out`
    is a stale or partial entry and is replaced."""
    resuming = resumable(out, cfg, stage)
    try:
        return train_fn(cfg, out, *args, resuming=resuming, overwrite=not resuming, **kwargs)
    except Interrupted:                              # its message says --resume, which this script does itself
        raise Interrupted(f"interrupted while training {out}: its ckpt.pt is saved; "
                          f"run the same command again to continue from there") from None


def made(train_fn, cfg: Config, out: str, *args, stage: int = 1, **kwargs) -> dict:
    """A finished run is read, a stopped one continued, a missing one trained -> its summary."""
    summary = cached_summary(out)
    return summary if summary is not None else train_missing(train_fn, cfg, out, *args, stage=stage, **kwargs)
