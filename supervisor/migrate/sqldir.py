"""A directory of ``NNNN_name.sql`` files, applied in version order.

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
TABLE = "supervise_migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    file: str
    sql: str
    checksum: str
    transactional: bool


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
        text = normalise(file.read_text(encoding="utf-8"))
        found[version] = Migration(
            version, match.group(2), file.name, text, checksum(text), _transactional(text)
        )
    return [found[v] for v in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Split on semicolons outside quotes, dollar quotes and comments."""
    out, start, i, n = [], 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in ("'", '"'):
            j = i + 1
            while j < n:
                if sql[j] == c and sql.startswith(c * 2, j):
                    j += 2
                elif sql[j] == c:
                    break
                else:
                    j += 1
            i = j + 1
        elif c == "$":
            m = re.match(r"\$[A-Za-z_]?[A-Za-z0-9_]*\$", sql[i:])
            if m:
                tag = m.group(0)
                j = sql.find(tag, i + len(tag))
                i = n if j < 0 else j + len(tag)
            else:
                i += 1
        elif c == ";":
            out.append(sql[start:i])
            start = i = i + 1
        else:
            i += 1
    out.append(sql[start:])
    return [s.strip() for s in out if _has_code(s)]


def _has_code(statement: str) -> bool:
    without_comments = re.sub(r"--[^\n]*|/\*.*?\*/", "", statement, flags=re.DOTALL)
    return bool(without_comments.strip())
