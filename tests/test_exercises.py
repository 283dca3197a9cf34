"""exercises/check.py tells the worked solution from the untouched stub or a wrong answer.

Every check runs with --fast: fill-ins skip their slowest tests and run in a subprocess (they swap
the project's functions for the whole process); the others run here and read the measured runs
in exercises/fixtures/. Nothing here reads what a student wrote into exercises/stubs/ or
exercises/answers/, so the tests pass while the exercises are being done.
"""
import ast
import os
import subprocess
import sys

import pytest

from exercises import check
from conftest import HANG

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLUTIONS = os.path.join(ROOT, "exercises", "solutions")

# one wrong answer per predict-and-measure exercise: the answers a reasonable guess gives
WRONG = {
    2: {"share of training times t above 0.5": "0.5", "Euler steps of 16 spent between t = 1 and t = 0.5": "8"},
    3: {"paper, memory tokens at 4x4x2": "5,850"},
    7: {"the floor, above or below the average training frame": "above"},
    8: {"the two latent frames retrieved best": "0 1"},
    9: {"4x4x2 beats its pooled video, yes or no": "no"},
    10: {"window only's memory use at gap 6, in dB": "0.5"},
}


def check_in_a_process(*args):
    done = subprocess.run([sys.executable, "exercises/check.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=HANG)
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1, done.stdout      # one line, whatever happens
    return done.returncode, done.stdout.strip()


def untouched(stub: str, folder) -> str:
    """The stub as shipped, whatever a student has written into it since: every function body
    back to `raise NotImplementedError` after its docstring -> the path of that copy in folder."""
    tree = ast.parse(open(stub).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            docstring = node.body[:1] if ast.get_docstring(node) else []
            node.body = docstring + [ast.parse(f"raise NotImplementedError('write {node.name}')").body[0]]
    path = os.path.join(folder, os.path.basename(stub))
    open(path, "w").write(ast.unparse(tree))
    return path


@pytest.mark.parametrize("n", sorted(check.FILL_INS))
def test_fill_in_passes_its_solution_and_fails_the_untouched_stub(n, tmp_path):
    name = check.FILL_INS[n][0]
    code, line = check_in_a_process(str(n), "--fast", "--stub", os.path.join(SOLUTIONS, name))
    assert code == 0 and line.startswith(f"PASS {n}:"), line
    stub = untouched(os.path.join(ROOT, "exercises", "stubs", name), tmp_path)
    code, line = check_in_a_process(str(n), "--fast", "--stub", stub)
    assert code == 1 and line.startswith(f"FAIL {n}:") and "NotImplementedError" in line, line


def solution_answers(n) -> str:
    return os.path.join(SOLUTIONS, "answers", f"{n}.txt")


@pytest.mark.parametrize("n", sorted(check.ANSWERED))
def test_answer_check_passes_the_solution_and_fails_a_wrong_answer(n, tmp_path):
    code, line = check.verdict([str(n), "--fast", "--answer", solution_answers(n)])
    assert code == 0 and line.startswith(f"PASS {n}:"), line
    wrong = tmp_path / "wrong.txt"
    answers = check.read_answers(solution_answers(n), check.ANSWERED[n][0])
    wrong.write_text("".join(f"{q}: {WRONG[n].get(q, a)}\n" for q, a in answers.items()))
    code, line = check.verdict([str(n), "--fast", "--answer", str(wrong)])
    assert code == 1 and line.startswith(f"FAIL {n}:"), line


@pytest.mark.parametrize("n", sorted(check.ANSWERED))
def test_the_answer_file_asks_the_checks_questions_and_a_blank_one_is_bad_input(n, tmp_path):
    questions = check.ANSWERED[n][0]
    template = open(os.path.join(ROOT, "exercises", "answers", f"{n}.txt")).read()
    assert all(f"{q}:" in template for q in questions)
    blank = tmp_path / "blank.txt"
    blank.write_text("".join(f"{q}:\n" for q in questions))      # the template as shipped
    code, line = check.verdict([str(n), "--fast", "--answer", str(blank)])
    assert code == 2 and "no answer after" in line, line


def test_a_missing_run_or_a_broken_file_is_one_line_of_bad_input(tmp_path, monkeypatch):
    monkeypatch.setattr(check, "HERE", str(tmp_path))       # no exercises/runs/ here
    code, line = check.verdict(["7", "--answer", solution_answers(7)])
    assert code == 2 and "no finished run" in line and "section 7" in line, line
    broken = tmp_path / "flow_path.py"
    broken.write_text("def add_noise(x0, eps, t)\n    return x0\n")
    code, line = check.verdict(["1", "--stub", str(broken)])
    assert code == 2 and "does not import: SyntaxError" in line, line


def test_the_stand_in_dit_catches_a_loss_with_the_wrong_target(tmp_path):
    """pfp_loss regressing x0 - eps (the velocity of the other time convention) passes the project's
    shape and seed tests; the stand-in DiT, which rebuilds L_pfp from what it was given, does not."""
    solution = open(os.path.join(SOLUTIONS, "pfp_objective.py")).read()
    wrong = tmp_path / "pfp_objective.py"
    wrong.write_text(solution.replace("velocity_target(x0, eps)", "(x0 - eps)"))
    assert check.loss_follows_its_definition(os.path.join(SOLUTIONS, "pfp_objective.py"))[0]
    ok, why = check.loss_follows_its_definition(str(wrong))
    assert not ok and "eps - x0" in why, why
