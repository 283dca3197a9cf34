"""Bad input on the command line: one line naming the problem and the fix, exit code 2, no traceback."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def write_mp4(path, frames, size=40):
    import imageio.v2 as imageio
    import numpy as np
    rng = np.random.default_rng(0)
    imageio.mimwrite(path, [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(frames)], fps=10)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    (base / "empty").mkdir()
    (base / "short").mkdir()
    write_mp4(str(base / "short" / "clip.mp4"), frames=6)
    (base / "corrupt").mkdir()
    (base / "corrupt" / "broken.mp4").write_bytes(os.urandom(2000))
    return base


CASES = {
    "unknown scale": (["--scale", "huge"], "invalid choice: 'huge'"),
    "unknown variant": (["--compressor", "big"], "invalid choice: 'big'"),
    "rate not dividing": (["--rate", "3x3x2"], "does not divide the token grid"),
    "rate malformed": (["--rate", "4x4"], "HxWxT"),
    "not a number": (["--steps", "many"], "invalid int value"),
    "missing folder": (["--data", "/no/such/folder"], "does not exist"),
    "empty folder": (["--data", "{empty}"], "holds no"),
    "video shorter than history": (["--data", "{short}"], "frames"),
    "corrupt file": (["--data", "{corrupt}"], "broken.mp4"),
}


@pytest.mark.parametrize("case", CASES)
def test_train_pfp_bad_input_is_one_line_exit_2(case, folders, tmp_path):
    args, expected = CASES[case]
    args = [a.format(empty=folders / "empty", short=folders / "short", corrupt=folders / "corrupt") for a in args]
    result = run("train_pfp.py", *args, "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_sample_with_missing_or_broken_checkpoint(tmp_path):
    missing = run("sample.py", "--ckpt", str(tmp_path / "nope.pt"), "--retrieve")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    truncated = run("sample.py", "--ckpt", str(broken), "--retrieve")
    for result, expected in [(missing, "not found"), (truncated, "could not be read")]:
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert expected in result.stderr.strip() and len(result.stderr.strip().splitlines()) == 1
