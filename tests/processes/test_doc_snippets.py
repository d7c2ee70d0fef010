"""Every shell and Python snippet of the docs runs, as written, against a real
PostgreSQL, or says why it cannot (tests/processes/snippets.py runs them;
docs/architecture.md, "Code blocks in the docs", has the convention)."""

from __future__ import annotations

import re
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest
from snippets import (
    ROOT,
    Page,
    SnippetError,
    as_url,
    doc_files,
    page_environment,
    parse,
    prepare_project,
    runnable,
)

from supervisor.testing.postgres import fresh_database

DOCS = doc_files()


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_the_snippets_of_a_page_run(doc: Path, tmp_path: Path, postgres_server):
    blocks = parse(doc)
    if not list(runnable(blocks)):
        pytest.skip("no snippet to run on this page")
    runtime = Path(tempfile.mkdtemp(prefix="svdoc", dir="/tmp"))  # short: unix socket paths
    try:
        with fresh_database(postgres_server.url, prefix="docs") as url:
            home = tmp_path / "home"
            home.mkdir()
            page = Page(doc, prepare_project(tmp_path), page_environment(as_url(url), home, runtime), runtime)
            page.run(blocks)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def test_every_snippet_runs_or_says_why():
    """The convention holds on every page: a runnable block runs unless a
    marker says why not, and a marker sits only on a block it changes."""
    ran, excerpts, reasons = 0, 0, {}
    for doc in DOCS:
        for block in parse(doc):
            if block.marks and block.kind is None:
                raise AssertionError(f"{block.where}: a marker on a block never run ({block.lang})")
            if block.kind is None:
                continue
            if "not run" in block.marks:
                reasons[block.where] = block.marks["not run"]
            elif "excerpt of" in block.marks:
                excerpts += 1
            else:
                ran += 1
    print(f"{ran} snippets run, {excerpts} checked as excerpts, {len(reasons)} marked not run:")
    for where, reason in reasons.items():
        print(f"  {where}: {reason}")
    assert ran >= 40, ran  # the parser finds the blocks
    assert len(reasons) < ran / 2, reasons  # and most of them run


def test_markers_are_invisible_in_the_site():
    import markdown
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    extensions = [e if isinstance(e, str) else next(iter(e)) for e in config["markdown_extensions"]]
    text = (
        "Before.\n\n<!-- not run: needs a Kubernetes cluster -->\n```sh\nkubectl apply\n```\n\n"
        "<!-- setup:\nmkdir -p tls\n-->\n```sh\nls tls\n```\n"
    )
    html = markdown.markdown(text, extensions=extensions)
    assert "<!-- not run: needs a Kubernetes cluster -->" in html
    assert "<!-- setup:\nmkdir -p tls\n-->" in html
    visible = re.sub(r"<[^>]*>", "", re.sub(r"<!--.*?-->", "", html, flags=re.S))  # what a reader sees
    assert "Kubernetes" not in visible and "mkdir" not in visible and "setup" not in visible
    assert "kubectl apply" in visible and "ls tls" in visible


def _page(tmp_path: Path, url: str, text: str) -> tuple[Page, list]:
    doc = tmp_path / "page.md"
    doc.write_text(textwrap.dedent(text))
    home = tmp_path / "home"
    home.mkdir()
    runtime = Path(tempfile.mkdtemp(prefix="svdoc", dir="/tmp"))
    page = Page(doc, prepare_project(tmp_path), page_environment(as_url(url), home, runtime), runtime)
    return page, parse(doc)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Text.\n\n```sh\nsupervise check nosuch:main\n```\n",
            "page.md:3: exited 4\n$ supervise check nosuch:main",
        ),
        (
            "```console\n$ supervise check app:main -w 3\n"
            + "target: app:main  [main]\n  workers  2  --workers\n```",
            "page.md:1: output differs from the page: expected 'workers 2 --workers', "
            "got 'workers 3 --workers'",
        ),
        (
            "```python\n# broken.py\nasync def app(scope, receive, send):\n    raise RuntimeError\n```\n\n"
            "```sh\nsupervise broken:app -w 1\n```\n",
            "page.md:7: does not answer HTTP on http://127.0.0.1:",
        ),
        ("```sh\nsupervise app:main --workers 0\n```\n", "page.md:1: exited 2 instead of serving"),
        ("<!-- not-run: typo -->\n```sh\ntrue\n```\n", "line 1: an HTML comment before a code block must be"),
        (
            "```python\n# ok.py\nx = 1\n```\n\n<!-- excerpt of: ok.py -->\n```python\ny = 2\n```\n",
            "not found in ok.py",
        ),
    ],
)
def test_the_runner_fails_naming_the_page_and_line(
    tmp_path: Path, postgres_url: str, text: str, message: str
):
    with pytest.raises(SnippetError) as failed:
        page, blocks = _page(tmp_path, postgres_url, text)
        try:
            page.run(blocks)
        finally:
            shutil.rmtree(page.runtime, ignore_errors=True)
    assert message in str(failed.value), str(failed.value)
