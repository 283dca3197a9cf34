"""Files a run leaves behind, and how they are kept safe: none of it is the paper's method.

- write_atomically: write a temporary file (a name unique to this process), flush it to disk,
  rename it over the old one. An interrupted or failed write leaves the old file, never half of one.
- read_checkpoint / load_checkpoint: torch.load with weights_only=True. A checkpoint holds only
  tensors, dicts, lists, numbers and strings, so loading one can never run code from it.
- RunFolder: a training run's --out. A new run refuses a folder that already holds a run
  (--resume continues it, --overwrite replaces it); a lock file holding the writer's pid keeps a
  second run out while the first lives, and a lock whose process is gone is taken over.

    python sample.py --ckpt runs/pfp_2x2x2/ckpt.pt --retrieve      # loads through here
"""
import json
import os
import pickle
import re
import shutil
import sys
import uuid
from dataclasses import fields

import torch

from config import SIGNALLED, Config, ConfigError, check
from compressor import Compressor
from dit import DiT

RUN_FILES = ("ckpt.pt", "metrics.jsonl", "config.json", "summary.json", "retrieval.png", "next_chunk.png")


def write_atomically(path, write):
    """write(tmp_path), flush it to disk, then rename over `path`. On any failure (a full disk, a
    read-only folder, Ctrl-C) the temporary file is removed and `path` keeps its old contents;
    OSError becomes one line (ConfigError)."""
    stem, extension = os.path.splitext(path)
    tmp = f"{stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{extension}"   # the extension lets imageio pick the format
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        # A full disk is an OSError from open() and write(), but torch's zip writer reports it as
        # a RuntimeError ("unexpected pos"): both mean the file could not be written.
        if isinstance(e, (OSError, RuntimeError)):
            kept = "its previous version is kept" if os.path.exists(path) else "nothing was written"
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0][:160]
            raise ConfigError(f"could not write {path}: {why} ({kept}); free disk space or choose another --out") from e
        raise


def writable_folder(path: str, flag: str = "--out") -> str:
    """Check, before any work, that `path` is (or can be made) a folder we can write -> path.
    Only a folder this call created is removed again, so a failed run leaves nothing behind."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag} {path} is a file, not a folder: choose a folder")
    made = not os.path.exists(path)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".probe-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        open(probe, "w").close()
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"{flag} {path} cannot be written ({e.strerror or e}): choose a folder you can write to") from e
    finally:
        if made and os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
    return path


def read_checkpoint(path, device="cpu") -> dict:
    """torch.load(weights_only=True) with a one-line error for a missing, truncated or foreign file,
    or one that holds Python objects (whose unpickling could run code: refused, never run)."""
    if os.path.isdir(path) or not os.path.exists(path):
        raise ConfigError(f"checkpoint {path!r} not found: pass the ckpt.pt of a train_pfp.py or train_ar.py run (runs/<name>/ckpt.pt)")
    if not os.path.isfile(path):                     # a FIFO or a device: reading it could wait forever
        raise ConfigError(f"checkpoint {path!r} is not a regular file: pass the ckpt.pt of a train_pfp.py or train_ar.py run")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" not in str(e).lower():   # garbage, not an object: the truncated case below
            raise ConfigError(f"checkpoint {path!r} could not be read (not a PyTorch checkpoint): it is truncated or not "
                              f"from train_pfp.py/train_ar.py; retrain or pass another file") from e
        raise ConfigError(f"checkpoint {path!r} holds Python objects, not only weights: refused unread, since loading "
                          f"it could run code; use checkpoints written by train_pfp.py/train_ar.py") from e
    except Exception as e:
        raise ConfigError(f"checkpoint {path!r} could not be read ({type(e).__name__}): it is truncated or not "
                          f"from train_pfp.py/train_ar.py; retrain or pass another file") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict):
        raise ConfigError(f"checkpoint {path!r} is a PyTorch file but not a checkpoint of train_pfp.py/train_ar.py "
                          f"(no config in it): pass a ckpt.pt of theirs")
    kinds = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}
    for f in fields(Config):
        value = ckpt["config"].get(f.name)
        if f.name in ckpt["config"] and (not isinstance(value, kinds[f.type]) or (f.type is not bool and isinstance(value, bool))):
            raise ConfigError(f"checkpoint {path!r} has an invalid config ({f.name} is {value!r}, not a {f.type.__name__}): "
                              f"pass a ckpt.pt of train_pfp.py/train_ar.py")
    for key in ("dit", "dit_ema", "compressor", "compressor_ema"):
        weights = ckpt.get(key)
        if key in ckpt and not (isinstance(weights, dict) and all(isinstance(w, torch.Tensor) for w in weights.values())):
            raise ConfigError(f"checkpoint {path!r}: its {key} is not a set of weights: pass a ckpt.pt of train_pfp.py/train_ar.py")
    if isinstance(ckpt["config"].get("threads"), int):
        ckpt["config"]["threads"] = 0    # the writer's machine, not the model: this machine picks its own
    try:
        check(Config(**ckpt["config"]))
        ckpt["dit"], ckpt["dit_ema"], ckpt["compressor_ema"]
    except ConfigError as e:
        raise ConfigError(f"checkpoint {path!r} has an invalid config ({e})") from e
    except (KeyError, TypeError, IndexError) as e:
        raise ConfigError(f"checkpoint {path!r} lacks what train_pfp.py/train_ar.py write ({type(e).__name__}: {e}): "
                          f"pass a ckpt.pt of theirs") from e
    return ckpt


def load_checkpoint(path, device="cpu"):
    """-> (cfg, dit, phi, stage) with the EMA weights; the config comes from the checkpoint itself."""
    ckpt = read_checkpoint(path, device)
    cfg = Config(**ckpt["config"])
    dit, phi = DiT(cfg).to(device), Compressor(cfg).to(device)
    try:
        dit.load_state_dict(ckpt["dit_ema"])
        phi.load_state_dict(ckpt["compressor_ema"])
    except (KeyError, RuntimeError) as e:
        raise ConfigError(f"checkpoint {path!r} does not match its own config ({type(e).__name__}): retrain it") from e
    broken = [k for k, w in {**ckpt["dit_ema"], **ckpt["compressor_ema"]}.items()
              if w.is_floating_point() and not torch.isfinite(w).all()]
    if broken:
        print(f"warning: checkpoint {path!r} holds weights that are not finite ({len(broken)} tensors, e.g. "
              f"{broken[0]}): what it makes will be NaN; retrain with a lower --lr", file=sys.stderr)
    return cfg, dit.eval(), phi.eval(), ckpt.get("stage", 1)


def latent_name(cfg: Config) -> str:
    """How a run's latent is named in messages: "lossless", or "pca with K channels"."""
    return f"pca with {cfg.pca_channels} channels" if cfg.latent == "pca" else "lossless"


def load_dit(dit, path: str) -> dict:
    """Load a checkpoint's EMA DiT into `dit` (a base model, or stage 1 for stage 2) -> the checkpoint.
    Its latent comes with it (a --latent pca basis is part of the DiT), so every stage built on a
    base shares the base's latent. Parts the checkpoint may lack start as no-ops (cross-attention,
    the caption encoder, the memory read, or a read made for another rate) and are trained from there; any other difference is one line naming the
    flags to match."""
    ckpt = read_checkpoint(path)
    theirs, ours = Config(**ckpt["config"]), dit.cfg
    if latent_name(theirs) != latent_name(ours):
        raise ConfigError(f"--init {path}: its latent is {latent_name(theirs)}, this run's {latent_name(ours)}; a run "
                          f"shares its base's latent: pass --latent {theirs.latent}"
                          + (f" --pca_channels {theirs.pca_channels}" if theirs.latent == "pca" else ""))
    # The memory read is made for one rate (one unpacking map per place in a memory cell): a run
    # at another rate, or without it, starts its own as a no-op.
    ours = dit.state_dict()
    weights = {k: v for k, v in ckpt["dit_ema"].items()
               if not k.startswith("memory_read.") or (k in ours and ours[k].shape == v.shape)}
    try:
        missing, unexpected = dit.load_state_dict(weights, strict=False)
    except RuntimeError:                             # a tensor of another shape
        missing, unexpected = [], ["shape"]
    new_parts = (".cross.", ".norm_cross.", "caption_encoder.", "memory_caption.", "memory_read.")
    if unexpected or any(not any(part in k for part in new_parts) for k in missing):
        raise ConfigError(f"--init {path}: its DiT does not match this config (dim/depth/heads/patch/latent, "
                          f"cross_attn or captions differ); pass the flags it was trained with")
    return ckpt


def process_start(pid: int):
    """When process `pid` started, in clock ticks since boot (/proc/<pid>/stat), or None where
    there is no /proc (macOS) or no such process: with the pid, it names one process for good."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def lock_text() -> str:
    """What a lock holds: this process's pid and start time."""
    return f"{os.getpid()} {process_start(os.getpid())}"


def lock_holder(text: str) -> int:
    """The pid of the live process that wrote a lock holding `text`, or 0 if it is gone: the pid
    must be alive and, where /proc tells, have started when the lock says (a pid reused by
    another process, Python or not, is not the writer)."""
    try:
        pid, started = text.split()
        pid = int(pid)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, OverflowError):
        return 0
    except PermissionError:                       # alive, but another user's
        return pid
    now = process_start(pid)
    return pid if now is None or str(now) == started else 0


class RunFolder:
    """A training run's --out, held for one writer.

    claim() checks everything before the run does any work: --out is a folder we can write; it
    holds no run unless --resume (continue it) or --overwrite (replace it) says what to do; no
    live process holds its lock. The lock (<out>/.lock, the writer's pid and start time) is taken with O_EXCL, so
    two runs starting together cannot both get it; a lock whose pid is gone is stale and taken
    over. start() then clears an overwritten run's files, and release() drops the lock (and the
    folder, if this run created it and wrote nothing)."""

    def __init__(self, path: str, resuming: bool = False, overwrite: bool = False, active: bool = True):
        self.path, self.resuming, self.overwrite, self.active = path, resuming, overwrite, active
        self.lock, self.made, self.held = os.path.join(path, ".lock"), False, False

    def claim(self) -> "RunFolder":
        if not self.active:                      # under torchrun only rank 0 writes files
            return self
        if self.resuming and self.overwrite:
            raise ConfigError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ConfigError(f"--out {self.path} is a file, not a folder: choose a folder")
        self.made = not os.path.exists(self.path)
        writable_folder(self.path)
        os.makedirs(self.path, exist_ok=True)
        self.take_lock()
        self.remove_dead_writers_files()
        try:
            held = [f for f in RUN_FILES if os.path.exists(os.path.join(self.path, f))]
            if self.resuming and not os.path.isfile(os.path.join(self.path, "ckpt.pt")):
                raise ConfigError(f"--resume: {self.path} holds no ckpt.pt to continue from: drop --resume to start the run")
            if held and not self.resuming and not self.overwrite:
                raise ConfigError(f"--out {self.path} already holds a run ({', '.join(held)}): add --resume to continue it, "
                                  f"--overwrite to replace it, or choose another --out")
        except ConfigError:
            self.release()
            raise
        return self

    def take_lock(self):
        for _ in range(3):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    other = lock_holder(open(self.lock).read())
                except OSError:
                    other = 0
                if other and other != os.getpid():
                    self.release()
                    raise ConfigError(f"another run (pid {other}) is writing to {self.path}: wait for it, stop it, "
                                      f"or choose another --out")
                try:                              # stale: its writer is gone; take it over
                    os.remove(self.lock)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(lock_text())
            self.held = True
            return
        raise ConfigError(f"could not take the lock {self.lock}: another run is starting there; try again")

    def start(self, config: dict):
        """The run has its data and models: an overwritten run's files go now, not before, and the
        config is written. A run that fails earlier has written nothing."""
        if not self.active:
            return
        if SIGNALLED:                            # a Ctrl-C or SIGTERM a library swallowed: stop before writing
            raise KeyboardInterrupt
        if self.overwrite:
            self.clear_old_run()
        write_atomically(os.path.join(self.path, "config.json"), lambda tmp: open(tmp, "w").write(json.dumps(config, indent=1)))

    def remove_dead_writers_files(self):
        """Temporary files of write_atomically (<stem>.tmp-<pid>-<8 hex><ext>) left by a writer
        that was killed mid-write (SIGKILL leaves no chance to clean up): gone once we hold the lock."""
        for name in os.listdir(self.path):
            match = re.fullmatch(r".+\.tmp-(\d+)-[0-9a-f]{8}(\.\w+)?", name)
            if not match or int(match.group(1)) == os.getpid():
                continue
            try:
                os.kill(int(match.group(1)), 0)
            except ProcessLookupError:                 # its writer is gone
                try:
                    os.remove(os.path.join(self.path, name))
                except OSError:
                    pass
            except (PermissionError, OverflowError):
                pass

    def clear_old_run(self):
        """--overwrite, all or nothing: the old run's files are first moved aside (renames, which
        a file that cannot be removed refuses too), and only when all have moved are they deleted;
        if one cannot move, those moved go back and the old run stays whole."""
        aside = os.path.join(self.path, f".overwritten-{os.getpid()}")
        os.makedirs(aside, exist_ok=True)
        moved = []
        try:
            for name in RUN_FILES:
                if os.path.exists(os.path.join(self.path, name)):
                    os.rename(os.path.join(self.path, name), os.path.join(aside, name))
                    moved.append(name)
        except OSError as e:
            for name in moved:
                os.rename(os.path.join(aside, name), os.path.join(self.path, name))
            os.rmdir(aside)
            raise ConfigError(f"--overwrite: {self.path}/{os.path.basename(e.filename or '')} cannot be removed "
                              f"({e.strerror}): the old run is kept whole; free it or choose another --out") from None
        shutil.rmtree(aside, ignore_errors=True)

    def release(self):
        if self.held:
            try:
                if open(self.lock).read() == lock_text():
                    os.remove(self.lock)
            except (OSError, ValueError):
                pass
            self.held = False
        if self.made and os.path.isdir(self.path) and not os.listdir(self.path):
            os.rmdir(self.path)

    def __enter__(self):
        return self.claim()

    def __exit__(self, *exc):
        self.release()
