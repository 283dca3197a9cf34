"""The docs name code that exists: every `file.py:name` in README.md and docs/*.md is defined there."""
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = re.compile(r"`([\w/]+\.py):([\w.]+)")


def defined(path: str, name: str) -> bool:
    """Is `name` (or Class.method) a def, class or top-level assignment in path?"""
    text = open(path).read()
    *owner, last = name.split(".")
    if owner and not re.search(rf"^class {owner[-1]}\b", text, re.M):
        return False
    return bool(re.search(rf"^\s*(def|class) {last}\b|^{last}\s*[:=]|^\s+{last}\s*[:=]", text, re.M))


def test_every_file_and_name_the_docs_cite_exists():
    missing = []
    for doc in ["README.md", *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]:
        for line in open(os.path.join(ROOT, doc)):
            for file, name in REFERENCE.findall(line):
                path = os.path.join(ROOT, file)
                if not os.path.isfile(path) or not defined(path, name):
                    missing.append(f"{os.path.relpath(doc, ROOT)}: {file}:{name}")
    assert not missing, missing


def test_the_check_finds_what_is_missing():
    assert defined(os.path.join(ROOT, "dit.py"), "DiT.forward")
    assert not defined(os.path.join(ROOT, "dit.py"), "DiT.no_such_method")
    assert not defined(os.path.join(ROOT, "dit.py"), "NoSuchClass.forward")
