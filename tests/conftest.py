"""Make the flat top-level modules importable from tests/, and run scripts in this process.

`cli("train_pfp.py", *flags)` runs a script's main() under config.run_main, which is all its
`if __name__ == "__main__"` does, so it is `python train_pfp.py FLAGS` without a fresh interpreter
(importing torch again costs about 2 s a call). Signals, torchrun and the scripts' own entry lines
need a real process: those tests still start one."""
import importlib
import os
import signal
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Tests wait on events (a line printed, a file written, a process ending), never on a budget of
# seconds: this is only the net under a process that hangs, half an hour, far past any busy machine.
HANG = 1800


def descendants(pid: int) -> set:
    """Every live process below pid (children, theirs, ...), from /proc; empty where there is none."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                children = open(f"/proc/{parent}/task/{task}/children").read().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind():
    """Whatever way a test ends, every process it started (and theirs) is killed after it, so a
    failed test never leaves work burning the cores of the tests after it."""
    before = descendants(os.getpid())
    yield
    for pid in descendants(os.getpid()) - before:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture
def cli(capsys, monkeypatch):
    """-> run(script, *argv) -> (exit code, stdout, stderr) of `python script argv...`, run here;
    script is a file name ("train_pfp.py") or the module. The process's signal handlers and torch's
    thread count (--threads) are put back afterwards, so one script never slows the tests after it."""
    import torch
    from config import SIGNALLED, run_main

    def run(script, *argv):
        module = importlib.import_module(script.removesuffix(".py")) if isinstance(script, str) else script
        monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *map(str, argv)])
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        threads = torch.get_num_threads()
        capsys.readouterr()
        try:
            run_main(module.main)
            code = 0
        except SystemExit as e:
            code = e.code
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            SIGNALLED.clear()
            torch.set_num_threads(threads)
        out = capsys.readouterr()
        return code, out.out, out.err
    return run
