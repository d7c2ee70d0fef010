"""The docs must match the code, read as text: the command lines use real options and
the environment variables exist (the build and the generated reference are
processes/test_docs_build.py)."""

import re
import shlex
from pathlib import Path

import click

from supervisor.cli import cli
from supervisor.settings.config import env_name, setting_names

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _pages():
    return sorted(DOCS.rglob("*.md"))


def _command_lines(text):
    """`supervise ...` command lines in the fenced code blocks of a page."""
    in_block = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if not in_block:
            continue
        line = line.strip().removeprefix("$ ")
        line = re.sub(r"^(\S*/)?supervise\b", "supervise", line)
        if line.startswith("supervise "):
            yield line


def _option_names(command):
    names = set()
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in (*param.opts, *param.secondary_opts):
                names.update(opt.split("/"))
    return names | {"-h", "--help"}


def test_documented_command_lines_use_real_options():
    bad = []
    for page in _pages():
        for line in _command_lines(page.read_text()):
            words = shlex.split(line.split(" #")[0].split("  #")[0], comments=False)
            name = words[1] if len(words) > 1 and words[1] in cli.commands else "run"
            known = _option_names(cli.commands[name]) | {"--version"}
            for word in words[1:]:
                if word.startswith("-") and word.split("=")[0] not in known:
                    bad.append(f"{page.relative_to(ROOT)}: {word!r} in {line!r}")
    assert not bad, "options the CLI does not have:\n" + "\n".join(bad)


def test_documented_environment_variables_exist():
    known = {env_name(n) for n in setting_names()} | {
        "SUPERVISE_TEST_DATABASE_URL",  # the pytest plugin's
        "SUPERVISE_TEST_REQUIRE_DB",
    }
    bad = []
    for page in [*_pages(), ROOT / "README.md"]:
        for var in set(re.findall(r"\bSUPERVISE_[A-Z_]+[A-Z]\b", page.read_text())):
            if var not in known:
                bad.append(f"{page.relative_to(ROOT)}: {var}")
    assert not bad, "environment variables no setting reads:\n" + "\n".join(bad)


def test_documented_test_paths_exist():
    """Each test file the docs name (``tests/...py``, with ``::test_name`` after it
    or not) is there, so a moved test leaves no dangling reference."""
    bad = []
    for page in [*_pages(), ROOT / "README.md", ROOT / "bench" / "README.md"]:
        for path, name in re.findall(r"\b(tests/[\w/]+\.py)(?:::(\w+))?", page.read_text()):
            where = f"{page.relative_to(ROOT)}: {path}"
            if not (ROOT / path).is_file():
                bad.append(where)
            elif name and not re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(), re.M):
                bad.append(f"{where}::{name}")
    assert not bad, "test files or tests the docs name that do not exist:\n" + "\n".join(bad)
