"""A minimal ``msgfmt``: gettext .po catalogs compiled to .mo, in pure Python.

Enough for the memory bench's own catalogs (bench/apps/djangoapp/locale):
``msgctxt``, ``msgid``, ``msgid_plural``, ``msgstr`` and ``msgstr[N]``,
strings continued over several lines, C escapes, ``#, fuzzy`` entries skipped
(the header excepted) and untranslated ones left out, as GNU msgfmt does. The
.mo has no hash table, which readers (Python's gettext, GNU libc) do not need.
"""

from __future__ import annotations

import ast
import os
import struct
from pathlib import Path

MAGIC = 0x950412DE


class POError(ValueError):
    pass


def _unquote(text: str, lineno: int) -> str:
    text = text.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise POError(f"line {lineno}: expected a quoted string, got {text!r}")
    value = ast.literal_eval(text)
    assert isinstance(value, str)
    return value


def parse_po(text: str) -> dict[str, str]:
    """The catalog as .mo keys and values: ``ctxt\\x04id``, ``id\\x00plural`` -> ``str0\\x00str1``."""
    out: dict[str, str] = {}
    entry: dict[str, str] = {}
    fuzzy = False
    field: str | None = None

    def flush() -> None:
        nonlocal entry, fuzzy
        if "msgid" in entry:
            msgid = entry["msgid"]
            if "msgid_plural" in entry:
                n = max((int(k[7:-1]) for k in entry if k.startswith("msgstr[")), default=-1)
                forms = [entry.get(f"msgstr[{i}]", "") for i in range(n + 1)]
                key, value = msgid + "\0" + entry["msgid_plural"], "\0".join(forms)
                translated = any(forms)
            else:
                key, value = msgid, entry.get("msgstr", "")
                translated = bool(value)
            if "msgctxt" in entry:
                key = entry["msgctxt"] + "\x04" + key
            if translated and (not fuzzy or msgid == ""):
                out[key] = value
        entry, fuzzy = {}, False

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                if "msgid" in entry:  # comments come between entries: this starts the next
                    flush()
                fuzzy = True
            continue
        if line.startswith('"'):
            if field is None:
                raise POError(f"line {lineno}: a string continues nothing")
            entry[field] += _unquote(line, lineno)
            continue
        keyword, _, rest = line.partition(" ")
        if keyword not in ("msgctxt", "msgid", "msgid_plural", "msgstr") and not (
            keyword.startswith("msgstr[") and keyword.endswith("]")
        ):
            raise POError(f"line {lineno}: unknown keyword {keyword!r}")
        # a new entry starts at its msgctxt, or at a msgid not preceded by one
        if keyword == "msgctxt" or (keyword == "msgid" and set(entry) - {"msgctxt"}):
            flush()
        entry[keyword] = _unquote(rest, lineno)
        field = keyword
    flush()
    return out


def mo_bytes(catalog: dict[str, str]) -> bytes:
    """The .mo image of ``catalog`` (keys sorted, little-endian, no hash table)."""
    keys = sorted(catalog, key=lambda k: k.encode())
    ids = b"".join(k.encode() + b"\0" for k in keys)
    strs = b"".join(catalog[k].encode() + b"\0" for k in keys)
    n = len(keys)
    ids_start = 7 * 4 + n * 16
    offsets: list[int] = []
    pos = 0
    for k in keys:
        offsets += [len(k.encode()), ids_start + pos]
        pos += len(k.encode()) + 1
    strs_start = ids_start + len(ids)
    pos = 0
    for k in keys:
        offsets += [len(catalog[k].encode()), strs_start + pos]
        pos += len(catalog[k].encode()) + 1
    header = struct.pack("<7I", MAGIC, 0, n, 7 * 4, 7 * 4 + n * 8, 0, 0)
    return header + struct.pack(f"<{len(offsets)}I", *offsets) + ids + strs


def compile_tree(src: str | Path, dest: str | Path) -> list[str]:
    """Every ``*.po`` under ``src`` compiled to the same relative path under ``dest``
    (``.mo``); returns the files written."""
    src, dest = Path(src), Path(dest)
    written = []
    for po in sorted(src.rglob("*.po")):
        mo = dest / po.relative_to(src).with_suffix(".mo")
        os.makedirs(mo.parent, exist_ok=True)
        mo.write_bytes(mo_bytes(parse_po(po.read_text(encoding="utf-8"))))
        written.append(str(mo))
    return written
