"""The docs must match the code, and the site must build without a warning."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click

from supervisor.cli import cli
from supervisor.settings.config import env_name, setting_names

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_reference_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, "docs/reference.md is stale: run python scripts/gen_reference.py"


def test_site_builds_strictly(tmp_path):
    # strict: a broken link or anchor, or a page missing from the nav, fails (mkdocs.yml)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    output = result.stdout + result.stderr
    warnings = [line for line in output.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0 and not warnings, output


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
