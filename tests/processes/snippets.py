"""Run the code blocks of the docs as a reader would, one page at a time
(``tests/processes/test_doc_snippets.py``). The convention a page follows, what runs,
how, and the markers that change it, is written for contributors in
docs/architecture.md, "Code blocks in the docs"; this module is its one
implementation: ``parse`` finds the blocks and their markers, ``Page`` runs
them in a copy of ``tests/docs_project``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.control import client, paths
from supervisor.errors import SupervisorError
from supervisor.testing.launch import session_pids

from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "tests" / "docs_project"
LANGUAGES = {
    "sh": "shell",
    "bash": "shell",
    "shell": "shell",
    "console": "console",
    "python": "python",
    "py": "python",
    "toml": "file",
    "sql": "file",
}
MARKS = ("not run", "setup", "excerpt of")
SUBCOMMANDS = {"check", "migrate", "status", "reload", "scale", "stop", "completion"}
COMMAND_TIMEOUT = 60.0
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
_MARK = re.compile(r"^<!--\s*([a-z ]+?)\s*:\s*(.*?)\s*-->$", re.S)
_URL = re.compile(r"postgres(?:ql)?(?:\+\w+)?://[^\s'\"]*")
_HOST_PORT = re.compile(r"\b(0\.0\.0\.0|127\.0\.0\.1|localhost):(\d{2,5})\b")
_PORT_OPTION = re.compile(r"(--port[ =])(\d{2,5})\b")
_FILE_HEADER = re.compile(r"^(?:#|--)\s+([\w./-]+\.(?:py|toml|sql))\s*$")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}(?::?\d{2})?)?")


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    marks: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        """shell, console, python or file; None for a block that is only shown."""
        kind = LANGUAGES.get(self.lang)
        if kind == "file" and not self.file:
            return None
        return kind

    @property
    def file(self) -> str | None:
        """The file the block's first line names (``# app.py``), if any."""
        first = self.body.split("\n", 1)[0].strip()
        m = _FILE_HEADER.match(first)
        if m is None or m.group(1).startswith(("/", "~")) or ".." in m.group(1):
            return None
        return m.group(1)

    @property
    def where(self) -> str:
        doc = self.doc.relative_to(ROOT) if self.doc.is_relative_to(ROOT) else self.doc
        return f"{doc}:{self.line}"


class SnippetError(AssertionError):
    """A snippet failed; the message names the doc and the line."""


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def parse(doc: Path) -> list[Block]:
    """The fenced blocks of ``doc``, each with the markers just before it."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        i += 1
        try:
            marks = _marks(lines, start)
        except SnippetError as exc:
            raise SnippetError(f"{doc}: {exc}") from None
        out.append(Block(doc, start + 1, lang, "\n".join(body), marks))
    return out


def _marks(lines: list[str], fence: int) -> dict[str, str]:
    """The ``<!-- key: value -->`` comments right before line ``fence`` (blank lines
    between them allowed); an unknown key is an error, not a silent no-op."""
    marks: dict[str, str] = {}
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    while j >= 0 and lines[j].strip().endswith("-->"):
        end = j
        while j >= 0 and not lines[j].strip().startswith("<!--"):
            j -= 1
        if j < 0:
            break
        text = "\n".join(line.strip() for line in lines[j : end + 1])
        m = _MARK.match(text)
        if m is None or m.group(1) not in MARKS:
            raise SnippetError(f"line {j + 1}: an HTML comment before a code block must be one of {MARKS}")
        if not m.group(2):
            raise SnippetError(f"line {j + 1}: <!-- {m.group(1)}: ... --> needs a value")
        marks[m.group(1)] = m.group(2)
        j -= 1
        while j >= 0 and not lines[j].strip():
            j -= 1
    return marks


def commands(text: str) -> list[str]:
    """Shell command lines: continuations joined, comment-only and blank lines dropped."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.strip() and not line.strip().startswith("#"):
            out.append(line.strip())
    return out


def as_url(conninfo: str) -> str:
    """A conninfo string as a postgresql:// URL (one shell word)."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(conninfo)
    user = urllib.parse.quote(str(params.get("user", "")), safe="")
    password = params.get("password")
    auth = user + (":" + urllib.parse.quote(str(password), safe="") if password else "")
    host = urllib.parse.quote(str(params.get("host", "localhost")), safe="")
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{auth}@{host}{port}/{params.get('dbname', '')}"


def session_of(pid: int) -> int | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(data[data.rindex(")") + 2 :].split()[3])


def _matches(expected: list[str], actual: str) -> str | None:
    """None when the ``console`` output shown is what came out, else what is missing."""

    def norm(line: str) -> str:
        return _TIME.sub("<time>", _DATE.sub("<date>", " ".join(line.split())))

    got = [norm(line) for line in actual.splitlines() if line.strip()]
    pos, skip = 0, False
    for want in (norm(line) for line in expected if line.strip()):
        if want == "...":
            skip = True
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("...")) + "$")
        while pos < len(got) and not pattern.match(got[pos]):
            if not skip:
                return f"expected {want!r}, got {got[pos]!r}"
            pos += 1
        if pos == len(got):
            return f"expected {want!r}, not in the output"
        pos, skip = pos + 1, False
    return None


@dataclass
class Server:
    command: str
    proc: subprocess.Popen[bytes]
    log: Path
    supervise: bool
    port: int | None
    tls: bool
    block: Block | None  # the block that started it
    master: int | None = None  # the master's pid, once it answered

    def tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""


class Page:
    """One page's run: its project directory, environment and running server."""

    def __init__(self, doc: Path, project: Path, env: dict[str, str], runtime: Path) -> None:
        self.doc = doc
        self.project = project
        self.env = env
        self.runtime = runtime
        self.ports: dict[str, int] = {}
        self.server: Server | None = None
        self.block: Block | None = None
        self.counter = 0

    # -- errors ------------------------------------------------------------------

    def fail(
        self, what: str, command: str = "", output: str = "", block: Block | None = None
    ) -> SnippetError:
        block = block or self.block
        where = block.where if block else str(self.doc)
        text = f"{where}: {what}"
        if command:
            text += f"\n$ {command}"
        if output:
            text += f"\n--- output (last lines) ---\n{output}"
        return SnippetError(text)

    # -- blocks ------------------------------------------------------------------

    def run(self, blocks: list[Block]) -> None:
        try:
            for block in blocks:
                self.block = block
                self.run_block(block)
        except BaseException:
            with contextlib.suppress(SnippetError):  # the first failure is the one to report
                self.stop_server()
            raise
        self.stop_server()

    def run_block(self, block: Block) -> None:
        if block.kind is None or "not run" in block.marks:
            return
        if "excerpt of" in block.marks:
            self.check_excerpt(block, block.marks["excerpt of"])
            return
        for line in commands(block.marks.get("setup", "")):
            self.command(line)
        if block.kind == "shell":
            for line in commands(block.body):
                self.command(line)
        elif block.kind == "console":
            self.console(block.body)
        elif block.kind == "file":
            self.write(block)
        elif block.kind == "python":
            self.python(block)

    def check_excerpt(self, block: Block, path: str) -> None:
        """Each line of the block (but a first line naming a file, and ``...``) is
        a line of ``path``, in order; runs of spaces count as one (a formatter's)."""

        def norm(line: str) -> str:
            indent = len(line) - len(line.lstrip())
            return " " * indent + " ".join(line.split())

        source = [norm(line) for line in (self.project / path).read_text().splitlines()]
        pos = 0
        lines = block.body.splitlines()[1 if _FILE_HEADER.match(block.body.split("\n", 1)[0]) else 0 :]
        for line in lines:
            if not line.strip() or line.strip().startswith("..."):
                continue
            while pos < len(source) and source[pos] != norm(line):
                pos += 1
            if pos == len(source):
                raise self.fail(f"excerpt line not found in {path} (in order): {line.strip()!r}")
            pos += 1

    def write(self, block: Block) -> Path:
        assert block.file is not None
        path = self.project / block.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.body + "\n")
        return path

    def python(self, block: Block) -> None:
        if block.file:
            path = self.write(block)
            parts = Path(block.file).with_suffix("").parts
            module = ".".join(parts)
            if all(part.isidentifier() for part in parts):
                self.run_checked([sys.executable, "-c", f"import {module}"], f"import {module}")
            else:
                self.run_checked([sys.executable, "-m", "py_compile", str(path)], f"compile {block.file}")
            return
        self.counter += 1
        stem = re.sub(r"\W", "_", self.doc.stem)
        if re.search(r"^def test_", block.body, re.M):
            name = f"test_snippet_{stem}_{block.line}.py"
            (self.project / name).write_text(block.body + "\n")
            argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name]
            self.run_checked(argv, f"pytest {name}", timeout=120)
        else:
            name = f"snippet_{stem}_{block.line}"
            (self.project / f"{name}.py").write_text(block.body + "\n")
            self.run_checked([sys.executable, "-c", f"import {name}"], f"python: import the block as {name}")

    def run_checked(self, argv: list[str], label: str, timeout: float = COMMAND_TIMEOUT) -> str:
        try:
            done = subprocess.run(
                argv, cwd=self.project, env=self.env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise self.fail(f"did not finish within {timeout:g} s", label, _text(exc.output)) from None
        output = done.stdout + done.stderr
        if done.returncode != 0:
            tail = "\n".join(output.splitlines()[-40:])
            raise self.fail(f"exited {done.returncode}", label, tail)
        return output

    def console(self, body: str) -> None:
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            command = lines[i][2:]
            expected = []
            i += 1
            while i < len(lines) and not lines[i].startswith("$ "):
                expected.append(lines[i])
                i += 1
            output = self.command(command)
            if output is not None and expected:
                problem = _matches(expected, output)
                if problem:
                    raise self.fail(f"output differs from the page: {problem}", command, output)

    # -- commands ----------------------------------------------------------------

    def command(self, line: str) -> str | None:
        """Run one command line; its output, or None for a server."""
        line = self.fill_in(line)
        print(f"{self.block.where if self.block else self.doc}: $ {line}", flush=True)
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            for word in words[1:]:
                name, _, value = word.partition("=")
                self.env[name] = value
            return ""
        rest = [w for w in words if not re.match(r"^[A-Za-z_]\w*=", w)] if words else []
        if self.is_server(rest):
            self.start_server(line, rest)
            return None
        return self.run_checked(["bash", "-c", line], line)

    def is_server(self, words: list[str]) -> bool:
        if not words:
            return False
        if words[0] == "supervise":
            return len(words) > 1 and not words[1].startswith("-") and words[1] not in SUBCOMMANDS
        if words[0] in ("gunicorn", "uvicorn"):
            return True
        return words[0] in ("python", "python3") and len(words) > 1 and words[1].endswith(".py")

    def port(self, doc_port: str) -> int:
        if doc_port not in self.ports:
            self.ports[doc_port] = free_port()
        return self.ports[doc_port]

    def fill_in(self, line: str) -> str:
        # ports first: the page's database URL has a port of its own
        line = _HOST_PORT.sub(lambda m: f"{m.group(1)}:{self.port(m.group(2))}", line)
        line = _PORT_OPTION.sub(lambda m: f"{m.group(1)}{self.port(m.group(2))}", line)
        line = _URL.sub(lambda _: self.env["DATABASE_URL"], line)
        if "<master-pid>" in line or "<worker-pid>" in line:
            status = self.status()
            if status is None:
                raise self.fail("names <master-pid> or <worker-pid>, but no master is running", line)
            line = line.replace("<master-pid>", str(status["master"]["pid"]))
            line = line.replace("<worker-pid>", str(status["workers"][0]["worker_pid"]))
        return line

    # -- servers -----------------------------------------------------------------

    def socket_path(self) -> Path:
        return self.runtime / "supervise" / paths.default_path(self.project).name

    def status(self) -> dict[str, Any] | None:
        try:
            return client.call(self.socket_path(), {"command": "status"}, timeout=2.0)
        except SupervisorError:
            return None

    def start_server(self, line: str, words: list[str]) -> None:
        self.stop_server()
        supervise = words[0] == "supervise" or words[0].startswith("python")
        target = words[2] if words[0] == "supervise" and words[1] == "run" else words[1]
        binds = any(w in ("-b", "--bind") or w.startswith("--bind=") for w in words)
        if words[0] == "supervise" and target.endswith(":app") and not binds:
            # the default 127.0.0.1:8000, made free: 8000 may be taken on a shared machine
            at = line.index(target) + len(target)
            line = f"{line[:at]} -b 127.0.0.1:{self.port('8000')}{line[at:]}"
        self.counter += 1
        log = self.project.parent / f"server-{self.counter}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", "-c", line],
                cwd=self.project,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        tls = "--ssl-certfile" in words
        bare = _URL.sub("", line)  # the database's port is not the server's
        found = re.findall(r"(?:127\.0\.0\.1|0\.0\.0\.0|localhost):(\d+)|--port[ =](\d+)", bare)
        ports = [int(a or b) for a, b in found]
        self.server = Server(line, proc, log, supervise, ports[0] if ports else None, tls, self.block)
        self.wait_ready(self.server)

    def wait_ready(self, server: Server) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            code = server.proc.poll()
            if code is not None:
                if code == 0:
                    return  # a job that finished its work, as the docs expect of some
                raise self.fail(f"exited {code} instead of serving", server.command, server.tail())
            if server.supervise:
                status = self.status()
                if status and session_of(status["master"]["pid"]) == server.proc.pid:
                    m = status["master"]
                    if m["workers"] and m["workers_ready"] == m["workers"]:
                        server.master = m["pid"]
                        self.probe(server, m.get("listening") or [])
                        return
            elif server.port is not None and self.answers(server.port, server.tls):
                return
            if time.monotonic() > deadline:
                raise self.fail(f"not ready within {READY_TIMEOUT:g} s", server.command, server.tail())
            time.sleep(0.05)

    def probe(self, server: Server, listening: list[str]) -> None:
        for address in listening:
            m = re.match(r"(https?)://([\d.]+):(\d+)", address)
            if m and not self.answers(int(m.group(3)), m.group(1) == "https", strict=True):
                raise self.fail(f"does not answer HTTP on {address}", server.command, server.tail())

    def answers(self, port: int, tls: bool, strict: bool = False) -> bool:
        """An HTTP GET / answered below 500 (``strict``: else raise instead of False)."""
        try:
            if tls:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    "127.0.0.1", port, timeout=10, context=context
                )
            else:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/")
                status = conn.getresponse().status
            finally:
                conn.close()
        except OSError as exc:
            if strict:
                raise self.fail(f"HTTP request to port {port} failed: {exc}") from None
            return False
        return status < 500

    def stop_server(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        try:
            if server.proc.poll() is None:
                if server.master is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(server.master, signal.SIGTERM)
                else:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(server.proc.pid, signal.SIGTERM)
            try:
                code = server.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                what = f"did not stop within {STOP_TIMEOUT:g} s of TERM"
                raise self.fail(what, server.command, server.tail(), server.block) from None
            if code != 0:
                raise self.fail(f"exited {code} on TERM", server.command, server.tail(), server.block)
            deadline = time.monotonic() + 10
            while session_pids(server.proc.pid):
                if time.monotonic() > deadline:
                    raise self.fail("left processes behind", server.command, server.tail(), server.block)
                time.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGKILL)
            for pid in session_pids(server.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _text(data: Any) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return str(data or "")


def page_environment(database_url: str, home: Path, runtime: Path) -> dict[str, str]:
    """What a reader's shell has: the virtual environment first on PATH, the
    database in DATABASE_URL, nothing of ours (SUPERVISE_* settings, PYTHONPATH)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("SUPERVISE_", "PYTEST_")) and not k.startswith("SUPERVISE_TEST_"))
        and k not in ("PYTHONPATH", "DATABASE_URL")
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        HOME=str(home),
        XDG_RUNTIME_DIR=str(runtime),
        TMPDIR=str(runtime),
        DATABASE_URL=database_url,
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def prepare_project(where: Path) -> Path:
    import shutil

    project = where / "project"
    shutil.copytree(PROJECT, project)
    (project / "examples").symlink_to(ROOT / "examples")
    return project


def runnable(blocks: list[Block]) -> Iterator[Block]:
    return (
        b for b in blocks if b.kind is not None and "not run" not in b.marks and "excerpt of" not in b.marks
    )
