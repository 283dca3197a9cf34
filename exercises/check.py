"""Check an exercise of exercises/README.md and say PASS or FAIL, and why, on one line.

    python exercises/check.py N                  # N = 1 .. 10
    python exercises/check.py N --fast           # fewer tests; exercises 7-9 read exercises/fixtures/, not your runs
    python exercises/check.py 1 --stub exercises/solutions/flow_path.py     # check another file
    python exercises/check.py 2 --answer exercises/solutions/answers/2.txt

Fill-in exercises (1, 4, 5, 6) run the project's own tests with your file's functions swapped in
(exercises/swap.py). The others compare the answers you wrote in exercises/answers/N.txt with
what was measured: the project's own numbers, your run in exercises/runs/, or a stored result.
Exit code: 0 PASS, 1 FAIL, 2 bad input (a missing run, file or answer).
"""
import argparse
import contextlib
import functools
import io
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)                      # the project's flat modules


class BadInput(Exception):
    """Something to run or write first: the message says what."""


# --- fill-in exercises: the project's own tests, with the student's functions ---------------------------
# exercise: (file in stubs/ and solutions/, test file, pytest -k expression choosing its tests,
#            the same for --fast: without the slowest tests)
FILL_INS = {
    1: ("flow_path.py", "tests/test_flow.py", "convention or velocity or add_noise or euler", None),
    4: ("memory_positions.py", "tests/test_models.py", "memory_positions or token_count or only_lr_at_rate",
        "memory_positions or only_lr_at_rate"),
    5: ("large_patchifier.py", "tests/test_models.py", "large_patchifier_starts or only_lr_at_rate", None),
    6: ("pfp_objective.py", "tests/test_models.py", "omega or same_seed or depends_on_the_memory", "omega or same_seed"),
}


class Outcomes:
    """A pytest plugin that keeps each test's result instead of printing it."""

    def __init__(self):
        self.passed, self.failed = [], []

    def pytest_runtest_logreport(self, report):
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            why = crash.message if crash else str(report.longrepr).strip().splitlines()[-1]
            self.failed.append((report.nodeid.split("::")[-1], why.splitlines()[0]))
        elif report.passed and report.when == "call":
            self.passed.append(report.nodeid)

    def pytest_collectreport(self, report):
        if report.failed:
            self.failed.append((report.nodeid, str(report.longrepr).strip().splitlines()[-1]))


def run_own_tests(path: str, tests: str, select: str) -> tuple:
    """Run the project's tests in `tests` chosen by `select`, with the functions of the file at
    `path` in place of the project's -> (ok, why)."""
    import pytest
    from exercises.swap import load_exercise
    try:
        load_exercise(path)
    except Exception as e:                    # a typo in the student's file: say where, not a traceback
        raise BadInput(f"{os.path.relpath(path, ROOT)} does not import: {type(e).__name__}: {e}")
    os.environ["EXERCISE_FILE"] = path
    outcomes = Outcomes()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = pytest.main([os.path.join(ROOT, tests), "-k", select, "-q", "-p", "exercises.swap",
                            "-p", "no:cacheprovider", "--rootdir", ROOT], plugins=[outcomes])
    total = len(outcomes.passed) + len(outcomes.failed)
    if code == pytest.ExitCode.NO_TESTS_COLLECTED or total == 0:
        raise BadInput(f"no test in {tests} matches -k '{select}': the project's tests were renamed; update FILL_INS")
    if outcomes.failed:
        name, why = outcomes.failed[0]
        return False, f"{len(outcomes.failed)} of {total} tests fail; first {name}: {why}"
    return True, f"all {total} tests chosen from {tests} pass with your file"


def loss_follows_its_definition(path: str) -> tuple:
    """Run the file's pfp_loss with a stand-in DiT that records what it is given and answers
    v = x_t / 2; rebuild L_pfp from those records -> (ok, why). Any order of random draws passes."""
    import torch
    from exercises.swap import load_exercise
    from compressor import Compressor
    from config import Config

    cfg = Config(hr_channels=4, targets=3)
    B = 4
    torch.manual_seed(0)
    phi, video = Compressor(cfg), torch.rand(B, cfg.history, 3, cfg.height, cfg.width) * 2 - 1
    seen = {}

    def dit(x_t, levels, frame_pos, memory, memory_pos):
        seen.update(x_t=x_t.detach(), levels=levels, frame_pos=frame_pos, memory=memory.detach(), memory_pos=memory_pos)
        return x_t / 2

    try:
        loss, per_sample, t = load_exercise(path).pfp_loss(dit, phi, video, cfg)
    except Exception as e:
        return False, f"pfp_loss with a stand-in DiT raised {type(e).__name__}: {e}"
    if not seen:
        return False, "pfp_loss never called the DiT"
    try:
        return rebuild_the_loss(seen, loss, per_sample, t, phi, video, cfg)
    except Exception as e:                    # e.g. outputs of another type or shape than asked for
        return False, f"pfp_loss's outputs do not fit its docstring: {type(e).__name__}: {e}"


def rebuild_the_loss(seen: dict, loss, per_sample, t, phi, video, cfg) -> tuple:
    """Compare pfp_loss's outputs with L_pfp rebuilt from what the stand-in DiT was given -> (ok, why)."""
    import torch
    from compressor import memory_positions
    from latent import encode

    B, k = video.shape[0], cfg.targets
    omega, levels = seen["frame_pos"], seen["levels"]
    if tuple(omega.shape) != (B, k) or tuple(t.shape) != (B,) or tuple(per_sample.shape) != (B,):
        return False, f"shapes: frame positions {tuple(omega.shape)}, t {tuple(t.shape)}, per-sample loss " \
                      f"{tuple(per_sample.shape)}; expected (B, k) = {(B, k)}, ({B},), ({B},)"
    if not torch.allclose(levels.float(), t[:, None].expand(B, k)):
        return False, "every target frame of a history is noised to that history's t: levels (B, k) = t repeated"
    if not torch.allclose(seen["memory"], phi(video)) or not torch.equal(seen["memory_pos"].float(), memory_positions(cfg)):
        return False, "the DiT must see phi(video) as its memory, at memory_positions(cfg)"
    x0 = encode(video, cfg.vae_space, cfg.vae_time)[torch.arange(B)[:, None], omega]      # (B, k, C, h, w)
    tt = t[:, None, None, None, None]
    eps = (seen["x_t"] - (1 - tt) * x0) / tt          # the noise, if x_t is on the path at the frames Omega
    if not 0.9 < eps.std().item() < 1.1 or abs(eps.mean().item()) > 0.1:
        return False, "the DiT's input is not (1 - t) x0 + t eps, with x0 the latent frames at Omega and eps ~ N(0, 1)"
    expected = (seen["x_t"] / 2 - (eps - x0)).pow(2).flatten(1).mean(1)                   # (B,)
    if not torch.allclose(per_sample, expected, rtol=1e-3, atol=1e-4):
        return False, "the per-sample loss is not the mean squared error between v and eps - x0"
    if not torch.allclose(loss, expected.mean(), rtol=1e-3, atol=1e-4):
        return False, "the loss is not the mean of the per-sample losses"
    return True, "and a stand-in DiT confirms the loss is L_pfp on the frames Omega"


def check_fill_in(n: int, path: str, fast: bool) -> tuple:
    _, tests, select, fast_select = FILL_INS[n]
    ok, why = run_own_tests(path, tests, fast_select if fast and fast_select else select)
    if ok and n == 6:
        ok, more = loss_follows_its_definition(path)
        why = f"{why}, {more}" if ok else more
    return ok, why


# --- answer files ---------------------------------------------------------------------------------------
def read_answers(path: str, questions: list) -> dict:
    """{question: answer text} from the file's 'question: answer' lines."""
    if not os.path.isfile(path):
        raise BadInput(f"no answer file {os.path.relpath(path, ROOT)}: write your answers there first")
    given = {}
    for line in open(path):
        question, colon, answer = line.partition(":")
        if colon and not line.lstrip().startswith("#"):
            given[question.strip().lower()] = answer.strip()
    for question in questions:
        if not given.get(question.lower()):
            raise BadInput(f"{os.path.relpath(path, ROOT)}: no answer after '{question}:'")
    return {q: given[q.lower()] for q in questions}


def number(text: str) -> float:
    """'187,200', '0.86', '86%' -> a float."""
    try:
        value = float(text.replace(",", "").replace("_", "").rstrip("%").strip())
    except ValueError:
        raise BadInput(f"'{text}' is not a number")
    return value / 100 if text.strip().endswith("%") else value


def choice(text: str, options: list) -> str:
    word = text.strip().lower()
    if word not in options:
        raise BadInput(f"'{text}' is not one of: {', '.join(options)}")
    return word


def judge(rows: list) -> tuple:
    """rows of (question, right?, what was measured) -> (ok, why): the first wrong answer, or all right."""
    wrong = [(q, measured) for q, right, measured in rows if not right]
    if wrong:
        q, measured = wrong[0]
        return False, f"{len(wrong)} of {len(rows)} answers off; '{q}': measured {measured}"
    return True, "; ".join(f"{q}: {measured}" for q, _, measured in rows)


# --- exercise 2: where the flow spends its time ----------------------------------------------------------
SHIFT_QUESTIONS = ["share of training times t above 0.5", "Euler steps of 16 spent between t = 1 and t = 0.5"]


def check_time_shift(answers: dict) -> tuple:
    import torch
    from flow import sample_t, sampling_times
    t = sample_t(400_000, shift=3.0, generator=torch.Generator().manual_seed(0))
    share = (t > 0.5).float().mean().item()
    steps = int((sampling_times(16, shift=3.0)[1:] >= 0.5).sum())      # steps that end at or above 0.5
    a, b = SHIFT_QUESTIONS
    return judge([(a, abs(number(answers[a]) - share) < 0.02, f"{share:.3f}"),
                  (b, number(answers[b]) == steps, f"{steps}")])


# --- exercise 3: token arithmetic ------------------------------------------------------------------------
TOKEN_QUESTIONS = ["tiny, memory tokens at 2x2x2", "tiny, memory tokens at 4x4x2",
                   "paper, DiT tokens of the whole history", "paper, memory tokens at 4x4x2"]


def check_tokens(answers: dict) -> tuple:
    from dataclasses import replace
    from compressor import memory_grid
    from config import SCALES
    tiny, paper = SCALES["tiny"], replace(SCALES["paper"], rate="4x4x2")
    measured = [math.prod(memory_grid(replace(tiny, rate="2x2x2"))), math.prod(memory_grid(replace(tiny, rate="4x4x2"))),
                math.prod(paper.token_grid), math.prod(memory_grid(paper))]           # (frames, rows, cols) multiplied
    return judge([(q, number(answers[q]) == m, f"{m:,}") for q, m in zip(TOKEN_QUESTIONS, measured)])


# --- exercises 7-9: short training runs ------------------------------------------------------------------
def summary(name: str, fast: bool, section: int, **expected) -> dict:
    """summary.json of exercises/runs/<name> (--fast: exercises/fixtures/<name>), checked to be the
    run the exercise asks for: `expected` config fields."""
    folder = os.path.join(HERE, "fixtures" if fast else "runs", name)
    path = os.path.join(folder, "summary.json")
    if not os.path.isfile(path):
        raise BadInput(f"no finished run in {os.path.relpath(folder, ROOT)}: run the command of section {section} "
                       f"in exercises/README.md first")
    s = json.load(open(path))
    for field, value in {"data": "synthetic", **expected}.items():
        if s["config"][field] != value:
            raise BadInput(f"{os.path.relpath(folder, ROOT)} was trained with --{field} {s['config'][field]}; "
                           f"section {section} asks for --{field} {value}")
    return s


FLOOR_QUESTIONS = ["the floor, above or below the average training frame",
                   "dB an ideal memoryless sampler loses to the average training frame"]


@functools.lru_cache()
def memoryless_baselines(history: int, size: int, val_videos: int) -> tuple:
    """PSNR on the validation videos of two answers that know nothing of the video -> (the average
    frame of 64 training videos, each validation video against another: a plausible, wrong video)."""
    from data import VAL_SEED_OFFSET, synthetic_videos
    from metrics import psnr
    val = synthetic_videos(range(VAL_SEED_OFFSET, VAL_SEED_OFFSET + val_videos), history, size)   # (V, T, 3, H, W)
    mean_frame = synthetic_videos(range(64), history, size).mean(dim=(0, 1))          # (3, H, W)
    return psnr(mean_frame.expand_as(val), val).mean().item(), psnr(val.roll(1, dims=0), val).mean().item()


def check_floor(answers: dict, fast: bool) -> tuple:
    s = summary("floor", fast, 7, compressor="none")
    cfg = s["config"]
    mean_psnr, other_psnr = memoryless_baselines(cfg["history"], cfg["height"], cfg["val_videos"])
    a, b = FLOOR_QUESTIONS
    side = "above" if s["psnr"] > mean_psnr else "below"
    gap = mean_psnr - other_psnr
    return judge([(a, choice(answers[a], ["above", "below"]) == side,
                   f"floor {s['psnr']:.2f} dB, average training frame {mean_psnr:.2f} dB: {side}"),
                  (b, abs(number(answers[b]) - gap) < 0.3,
                   f"another video scores {other_psnr:.2f} dB, {gap:.2f} dB below the average frame")])


OMEGA_QUESTIONS = ["the two latent frames retrieved best"]


def check_omega_last(answers: dict, fast: bool) -> tuple:
    s = summary("omega_last", fast, 8, omega="last")
    by_position = s["psnr_by_position"]
    best = sorted(sorted(range(len(by_position)), key=lambda i: by_position[i])[-2:])
    guess = sorted(int(number(x)) for x in answers[OMEGA_QUESTIONS[0]].replace(",", " ").split())
    if len(guess) != 2:
        raise BadInput(f"'{OMEGA_QUESTIONS[0]}': write two frame indices, e.g. 3 7")
    shown = ", ".join(f"frame {i} {by_position[i]:.2f} dB" for i in best)
    random_omega = os.path.join(HERE, "fixtures" if fast else "runs", "rate_2x2x2", "summary.json")
    beside = ""
    if os.path.isfile(random_omega):                  # exercise 9's 2x2x2 run: the same run with a random Omega
        r = json.load(open(random_omega))
        beside = f"; random Omega (exercise 9's 2x2x2 run): first third {r['psnr_first']:.2f} dB"
    return judge([(OMEGA_QUESTIONS[0], guess == best,
                   f"{shown}; first third {s['psnr_first']:.2f} dB, last third {s['psnr_last']:.2f} dB{beside}")])


RATE_QUESTIONS = ["memory tokens at 2x2x2", "memory tokens at 4x4x2",
                  "2x2x2 beats its pooled video, yes or no", "4x4x2 beats its pooled video, yes or no"]


def pooled_psnr(cfg: dict) -> float:
    """PSNR of the validation videos average-pooled by the rate, in pixels (what the LR branch is
    given), blown back up to full size: a baseline with no learning at all."""
    import torch.nn.functional as F
    from data import VAL_SEED_OFFSET, synthetic_videos
    from metrics import psnr
    rh, rw, rt = (int(r) for r in cfg["rate"].split("x"))
    val = synthetic_videos(range(VAL_SEED_OFFSET, VAL_SEED_OFFSET + cfg["val_videos"]), cfg["history"], cfg["height"])
    pooled = F.avg_pool3d(val.transpose(1, 2), (rt, rh, rw))                   # (V, 3, T/rt, H/rh, W/rw)
    up = F.interpolate(pooled, scale_factor=(rt, rh, rw), mode="nearest")      # (V, 3, T, H, W)
    return psnr(up.transpose(1, 2), val).mean().item()


def check_rates(answers: dict, fast: bool) -> tuple:
    rows = []
    for i, rate in enumerate(["2x2x2", "4x4x2"]):
        s = summary(f"rate_{rate}", fast, 9, rate=rate, compressor="pfp")
        tokens, baseline = s["memory_tokens"], pooled_psnr(s["config"])
        beats = "yes" if s["psnr"] > baseline else "no"
        rows += [(RATE_QUESTIONS[i], number(answers[RATE_QUESTIONS[i]]) == tokens, f"{tokens}"),
                 (RATE_QUESTIONS[2 + i], choice(answers[RATE_QUESTIONS[2 + i]], ["yes", "no"]) == beats,
                  f"{s['psnr']:.2f} dB after {s['steps']} steps, pooled video {baseline:.2f} dB: {beats}")]
    return judge(rows)


# --- exercise 10: recall after a cut back, from the stored results ---------------------------------------
CUT_BACK = os.path.join(ROOT, "results", "storyboard", "cut_back.json")
CUT_BACK_QUESTIONS = ["window only's memory use at gap 6, in dB", "the gap at which pfp's memory use is smallest"]


def check_cut_back(answers: dict) -> tuple:
    """Memory use = PSNR from the true history - PSNR from a history showing A's other look, per story."""
    if not os.path.isfile(CUT_BACK):
        raise BadInput(f"no {os.path.relpath(CUT_BACK, ROOT)}: the stored cut-back results are missing")
    rows = json.load(open(CUT_BACK))
    use = {}                                   # {row label: {gap: mean memory use in dB}}
    for label, row in rows.items():
        use[label] = {int(gap): sum(m - s for m, s in zip(v["model"], v["swapped"])) / len(v["model"])
                      for gap, v in row["scores"].items()}
    window = next(v for label, v in use.items() if label.startswith("window only"))
    pfp = next(v for label, v in use.items() if label.startswith("pfp") and "without" not in label)
    smallest = min(pfp, key=pfp.get)
    a, b = CUT_BACK_QUESTIONS
    every_gap = ", ".join(f"gap {g}: {u:.2f}" for g, u in pfp.items())
    return judge([(a, abs(number(answers[a]) - window[6]) < 0.05, f"{window[6]:.2f} dB"),
                  (b, number(answers[b]) == smallest, f"gap {smallest} ({every_gap} dB)")])


ANSWERED = {2: (SHIFT_QUESTIONS, check_time_shift), 3: (TOKEN_QUESTIONS, check_tokens),
            7: (FLOOR_QUESTIONS, check_floor), 8: (OMEGA_QUESTIONS, check_omega_last),
            9: (RATE_QUESTIONS, check_rates), 10: (CUT_BACK_QUESTIONS, check_cut_back)}
RUN_BASED = {7, 8, 9}


def refuse(message: str):
    raise BadInput(message)


def verdict(argv: list) -> tuple:
    """Check the exercise named in argv -> (exit code, the one line to print)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, choices=sorted({**FILL_INS, **ANSWERED}), help="the exercise's number")
    parser.add_argument("--fast", action="store_true",
                        help="fill-ins: skip the slowest tests; 7-9: read exercises/fixtures/, not your runs")
    parser.add_argument("--stub", help="fill-in exercises: the file to check (default exercises/stubs/<name>.py)")
    parser.add_argument("--answer", help="other exercises: the answer file (default exercises/answers/<n>.txt)")
    parser.error = refuse                                   # a bad command line is one line too
    try:
        args = parser.parse_args(argv)
        if args.n in FILL_INS:
            path = os.path.abspath(args.stub or os.path.join(HERE, "stubs", FILL_INS[args.n][0]))
            if not os.path.isfile(path):
                raise BadInput(f"no file {path}")
            ok, why = check_fill_in(args.n, path, args.fast)
        else:
            questions, check = ANSWERED[args.n]
            answers = read_answers(args.answer or os.path.join(HERE, "answers", f"{args.n}.txt"), questions)
            ok, why = check(answers, args.fast) if args.n in RUN_BASED else check(answers)
    except BadInput as e:
        return 2, f"error: {e}"
    return (0, f"PASS {args.n}: {why}") if ok else (1, f"FAIL {args.n}: {why}")


if __name__ == "__main__":
    code, line = verdict(sys.argv[1:])
    print(line)
    sys.exit(code)
