"""Every dotted `students.<module>.<name>` that a docstring, a comment or the docs name exists: the module imports
and the rest are its attributes. A rename or a move that leaves a stale pointer fails here.

Read: comments and docstrings of every Python file (not other strings: a signing salt or a
dispatch_uid spelled like a dotted name is a label, not a pointer), and the whole text of the
READMEs, docs, and the role's files. System check ids (students.<E|W><nnn>) are labels too.
"""
import importlib
import importlib.util
import io
import re
import tokenize
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
DOTTED = re.compile(r"(?<![\w./-])students(?:\.[A-Za-z_]\w*)+")
CHECK_ID = re.compile(r"^students\.[EW]\d+$")


def python_prose(text):
    """The comments and docstrings of a Python source: (line, text)."""
    previous = tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
        elif token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                                               tokenize.NL):
            yield token.start[0], token.string  # a string standing alone as a statement: a docstring
        if token.type not in (tokenize.COMMENT, tokenize.NL) or token.type == tokenize.NL:
            previous = token.type


def sources():
    code = [*(ROOT / "students").rglob("*.py"), *(ROOT / "lcstats").glob("*.py"), *(ROOT / "tests").rglob("*.py"),
            *ROOT.glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    for path in sorted(code):
        if "migrations" not in path.parts:
            yield path, list(python_prose(path.read_text()))
    docs = [*ROOT.glob("*.md"), *(ROOT / "docs").rglob("*.md"), *(ROOT / "ansible").rglob("*.md"),
            *(ROOT / "ansible").rglob("*.yml"), *(ROOT / "ansible").rglob("*.j2")]
    for path in sorted(docs):
        yield path, list(enumerate(path.read_text().splitlines(), 1))


def named():
    """Every (file, line, dotted name) found, check ids left out."""
    for path, pieces in sources():
        for line, text in pieces:
            for match in DOTTED.finditer(text):
                if not CHECK_ID.match(match.group()):
                    yield str(path.relative_to(ROOT)), line, match.group()


def exists(name):
    """Import `name` from the left: each part is a submodule of the package before it, else an
    attribute of what came before."""
    parts = name.split(".")
    found = importlib.import_module(parts[0])
    for cut, part in enumerate(parts[1:], 2):
        if hasattr(found, "__path__") and importlib.util.find_spec(".".join(parts[:cut])) is not None:
            found = importlib.import_module(".".join(parts[:cut]))  # a module's own import errors show
        elif hasattr(found, part):
            found = getattr(found, part)
        else:
            return False
    return True


def test_the_scan_finds_names_and_the_check_tells_a_stale_one():
    prose = dict(python_prose('x = "students.warning.page"  # see students.clock.read_state\n'
                              'def f():\n    """Like students.zones.restricted."""\n'))
    assert prose == {1: "# see students.clock.read_state", 3: '"""Like students.zones.restricted."""'}
    assert exists("students.clock.read_state") and exists("students.models.LogoutRun.objects")
    assert not exists("students.clock.applying") and not exists("students.no_such_module")


def test_every_dotted_students_name_in_prose_exists():
    stale = [f"{path}:{line}: {name}" for path, line, name in named() if not exists(name)]
    assert not stale, "names that no longer exist:\n" + "\n".join(stale)
