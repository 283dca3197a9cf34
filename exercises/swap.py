"""A pytest plugin: run the project's own tests with some of its functions replaced by an exercise file's.

    EXERCISE_FILE=exercises/solutions/flow_path.py python -m pytest -p exercises.swap tests/test_flow.py

The exercise file says in REPLACES what it replaces: a module ("flow") or a class in one
("compressor:Compressor"). Each function it defines whose name the target also has replaces the
target's. Modules that already hold the old function under that name (`from flow import
add_noise`) get the new one too, so a test sees the exercise's version wherever it looks.
exercises/check.py sets EXERCISE_FILE and loads this plugin.
"""
import importlib
import importlib.util
import os
import sys


def load_exercise(path: str):
    """Import the exercise file at `path` as a module (it imports the project's modules like any script)."""
    spec = importlib.util.spec_from_file_location("exercise_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def swap_in(path: str) -> list:
    """Put the functions of the exercise file at `path` in place of the project's -> their names."""
    exercise = load_exercise(path)
    module_name, _, class_name = exercise.REPLACES.partition(":")
    target = importlib.import_module(module_name)
    if class_name:
        target = getattr(target, class_name)
    own = {name: f for name, f in vars(exercise).items()                   # defined in the file, not imported into it
           if callable(f) and getattr(f, "__module__", None) == exercise.__name__ and hasattr(target, name)}
    for name, new in own.items():
        old = getattr(target, name)
        setattr(target, name, new)
        for module in list(sys.modules.values()):                          # earlier `from flow import add_noise`
            if getattr(module, name, None) is old:
                setattr(module, name, new)
    return sorted(own)


def pytest_configure(config):
    path = os.environ.get("EXERCISE_FILE")
    if path:
        config.exercise_swapped = (path, swap_in(path))


def pytest_report_header(config):
    if hasattr(config, "exercise_swapped"):
        path, names = config.exercise_swapped
        return f"exercise file {path} replaces: {', '.join(names)}"
