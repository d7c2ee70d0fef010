"""Reading a directory of ``NNNN_name.sql`` files: versions, checksums,
statements (:mod:`supervisor.migrate.sqldir` applies them).

Each file runs in one transaction together with its bookkeeping row, so a
failing file leaves nothing behind. A file whose leading comments contain
``-- no-transaction`` (needed for ``CREATE INDEX CONCURRENTLY``) runs statement
by statement in autocommit, and its row is written once all succeeded.
Applied files are checksummed (line endings normalised, so a CRLF checkout
does not count as an edit); an edited applied file is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import ConfigError, MigrationError

FILE_NAME = re.compile(r"^(\d+)_([A-Za-z0-9][A-Za-z0-9_\-]*)\.sql$")
NO_TRANSACTION = re.compile(r"^\s*--\s*no-transaction\s*$", re.IGNORECASE)
CONTRACT = re.compile(r"^\s*--\s*contract\b", re.IGNORECASE)
TABLE = "supervise_migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    file: str
    sql: str
    checksum: str
    transactional: bool
    contract: bool = False  # '-- contract' on its first line: applied once no old code runs (contract.py)


def normalise(text: str) -> str:
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def checksum(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def _transactional(sql: str) -> bool:
    for line in sql.splitlines():
        if NO_TRANSACTION.match(line):
            return False
        if line.strip() and not line.strip().startswith("--"):
            return True  # the directive only counts in the leading comments
    return True


def load(directory: str | Path) -> list[Migration]:
    """Read and validate the directory; sorted by version."""
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"migrations: {directory} is not a directory")
    found: dict[int, Migration] = {}
    for file in sorted(path.iterdir()):
        if file.suffix != ".sql":
            continue
        match = FILE_NAME.match(file.name)
        if not match:
            raise MigrationError(
                f"migration file {file.name!r} must be named NNNN_name.sql (a number, an underscore, a name)"
            )
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"two migrations have version {version}: {found[version].file} and {file.name}"
            )
        text = normalise(_read(file))
        found[version] = Migration(
            version,
            match.group(2),
            file.name,
            text,
            checksum(text),
            _transactional(text),
            bool(CONTRACT.match(text.partition("\n")[0])),
        )
    return [found[v] for v in sorted(found)]


def _read(file: Path) -> str:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise MigrationError(f"cannot read migration file {file.name}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # the offset finds the byte in any hex editor; the line, in the editor
        line = raw.count(b"\n", 0, exc.start) + 1
        raise MigrationError(
            f"migration file {file.name} is not UTF-8: byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start} (line {line}); save it as UTF-8"
        ) from None


_IDENTIFIER = re.compile(r'"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*)')


def identifiers(sql: str) -> set[str]:
    """Every name the SQL could refer to, as PostgreSQL stores it: unquoted
    ones folded to lower case, quoted ones as written. A superset (keywords,
    words in comments and strings too), which is what the invalid-index check
    wants: it may name one index too many, never miss one."""
    return {
        quoted.replace('""', '"') if quoted else bare.lower() for quoted, bare in _IDENTIFIER.findall(sql)
    }


def _ident(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _skip_quoted(sql: str, i: int) -> int:
    """Index just past the quoted literal or identifier that starts at ``i``."""
    quote, n = sql[i], len(sql)
    # E'...' strings take backslash escapes ('it\'s'); plain ones only doubled quotes
    escapes = quote == "'" and i > 0 and sql[i - 1] in "eE" and (i < 2 or not _ident(sql[i - 2]))
    j = i + 1
    while j < n:
        if (escapes and sql[j] == "\\") or (sql[j] == quote and sql.startswith(quote * 2, j)):
            j += 2
        elif sql[j] == quote:
            return j + 1
        else:
            j += 1
    return n


def _skip_block_comment(sql: str, i: int) -> int:
    depth, j, n = 0, i, len(sql)
    while j < n:
        if sql.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif sql.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    return n


_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


@dataclass(frozen=True)
class Statement:
    line: int  # of its first token, 1-based, in the file
    sql: str


def statements(sql: str) -> list[Statement]:
    """Split on semicolons outside literals, quoted identifiers, dollar quotes
    and comments (block comments nest, as in PostgreSQL), and outside a
    ``BEGIN ATOMIC ... END`` function body: as psql does, a ``BEGIN`` or
    ``CASE`` that is not a statement's first word opens a block that ``END``
    closes, and a semicolon inside a block does not end the statement."""
    out: list[Statement] = []
    start, i, n, depth, words = 0, 0, len(sql), 0, 0
    while i < n:
        c = sql[i]
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif c in ("'", '"'):
            i = _skip_quoted(sql, i)
        elif c == "$" and (i == 0 or not _ident(sql[i - 1])):
            tag = _DOLLAR_TAG.match(sql, i)
            if tag:
                j = sql.find(tag.group(0), tag.end())
                i = n if j < 0 else j + len(tag.group(0))
            else:
                i += 1  # a positional parameter such as $1
        elif c == ";" and depth == 0:
            _add(out, sql, start, i)
            start = i = i + 1
            words = 0
        elif (c.isalpha() or c == "_") and (i == 0 or not _ident(sql[i - 1])):
            word = _WORD.match(sql, i)
            assert word is not None
            words += 1
            name = word.group(0).lower()
            if name in ("begin", "case") and words > 1:
                depth += 1
            elif name == "end" and depth:
                depth -= 1
            i = word.end()
        else:
            i += 1
    _add(out, sql, start, n)
    return out


def _add(out: list[Statement], sql: str, start: int, end: int) -> None:
    """Add sql[start:end] if it holds code, numbered by its first token's line."""
    text = sql[start:end]
    code = _code_start(text)
    if code is not None:
        out.append(Statement(sql.count("\n", 0, start + code) + 1, text.strip()))


def _code_start(text: str) -> int | None:
    """Where the first token after blanks and comments is, or None."""
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            i = _skip_block_comment(text, i)
        else:
            return i
    return None
