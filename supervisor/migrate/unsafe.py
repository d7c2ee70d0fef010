"""The unsafe-operation check: pending SQL files are parsed with PostgreSQL's
own parser (pglast, the binding of libpg_query) before anything is applied,
and each statement that would lock or rewrite a live table, or break the code
still running during a rolling deploy, is one :class:`Finding`.

"Live" means a table that existed before this run: a table created by an
earlier statement of the pending files (or a temporary one) has no traffic
yet, so anything goes on it. A statement is acknowledged with a comment on
the lines before it, or at the end of its last line::

    -- unsafe-ok: nothing has read this column since release 41

``-- contract`` files are not checked: dropping what old code used is what
they are for, and they run only once no old code is left (contract.py).

pglast is GPL-3.0-or-later, so it is an extra (``pg-supervise[check]``), not a
dependency; without it :class:`Unavailable` is raised and callers decide
(``--check`` fails, a start warns and applies).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from supervisor.errors import ConfigError

if TYPE_CHECKING:
    import psycopg
    from pglast import ast

    from supervisor.migrate.sqlfiles import Migration

INSTALL = "pip install 'pg-supervise[check]'"
MARKER = re.compile(r"^(?:--|/\*)\s*unsafe-ok\b:?\s*(.*?)\s*(?:\*/)?$", re.IGNORECASE | re.DOTALL)

# Functions a default may call without rewriting the table: PostgreSQL 11+
# evaluates a non-volatile default once and stores it in the catalog. Any
# other function is asked of the server (pg_proc.provolatile) when there is
# one, and counts as volatile when there is not.
STABLE = frozenset(
    {"now", "statement_timestamp", "transaction_timestamp", "current_setting", "lower", "upper",
     "coalesce", "to_jsonb", "jsonb_build_object", "json_build_object", "jsonb_build_array",
     "make_interval", "make_date", "to_timestamp", "to_date"}
)  # fmt: skip
SERIAL = frozenset({"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"})

RULES: dict[str, tuple[str, str]] = {  # rule: (why it is unsafe, what to do instead)
    "syntax": ("PostgreSQL's parser rejects it", "fix the statement"),
    "drop-table": (
        "dropping a table breaks the code still running that uses it",
        "stop using it in a release first, then drop it in a '-- contract' file",
    ),
    "drop-column": (
        "dropping a column breaks the code still running that reads or writes it",
        "stop using it in a release first, then drop it in a '-- contract' file",
    ),
    "rename-table": (
        "renaming a table breaks the code still running that uses the old name",
        "create the new table (or a view under the new name), write to both, move the code, then drop "
        "the old one in a '-- contract' file",
    ),
    "rename-column": (
        "renaming a column breaks the code still running that uses the old name",
        "add the new column, write to both and backfill, move the code, then drop the old one in a "
        "'-- contract' file",
    ),
    "change-type": (
        "changing a column's type holds ACCESS EXCLUSIVE while it rewrites the table and its indexes "
        "(unless the old type converts without one, as varchar(n) to text does: then acknowledge it)",
        "add a column of the new type, write to both, backfill in batches, move the code, drop the old",
    ),
    "set-not-null": (
        "SET NOT NULL holds ACCESS EXCLUSIVE while it scans every row",
        "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID, then VALIDATE CONSTRAINT c; SET NOT NULL "
        "then uses the validated check and scans nothing",
    ),
    "constraint-not-valid": (
        "adding a CHECK or FOREIGN KEY checks every row while it holds the lock (a foreign key locks the "
        "table it references too)",
        "ADD CONSTRAINT ... NOT VALID, then ALTER TABLE ... VALIDATE CONSTRAINT (which lets reads and "
        "writes go on)",
    ),
    "add-unique": (
        "adding a PRIMARY KEY or UNIQUE constraint builds its index under ACCESS EXCLUSIVE",
        "CREATE UNIQUE INDEX CONCURRENTLY in a '-- no-transaction' file, then ADD CONSTRAINT ... USING INDEX",
    ),
    "index-concurrently": (
        "CREATE INDEX without CONCURRENTLY blocks every write to the table while it builds",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS, in a '-- no-transaction' file",
    ),
    "drop-index-concurrently": (
        "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on its table",
        "DROP INDEX CONCURRENTLY IF EXISTS, in a '-- no-transaction' file",
    ),
    "reindex-concurrently": (
        "REINDEX without CONCURRENTLY blocks writes to the table while it rebuilds",
        "REINDEX ... CONCURRENTLY, in a '-- no-transaction' file",
    ),
    "rewrite-table": (
        "VACUUM FULL and CLUSTER rewrite the table under ACCESS EXCLUSIVE",
        "leave it to autovacuum, or use pg_repack, outside the deploy",
    ),
    "volatile-default": (
        "a volatile default (or a serial, identity or stored generated column) rewrites the table under "
        "ACCESS EXCLUSIVE",
        "add the column without it, then SET DEFAULT for new rows and backfill old ones in batches",
    ),
    "needs-no-transaction": (
        "CONCURRENTLY cannot run inside the file's transaction",
        "put '-- no-transaction' in the file's leading comments",
    ),
    "ack-needs-reason": (
        "an 'unsafe-ok' marker must say why the statement is safe",
        "write '-- unsafe-ok: <the reason>'",
    ),
}


class Unavailable(ConfigError):
    """The check needs pglast, which is not installed."""


@dataclass(frozen=True)
class Finding:
    file: str
    line: int  # of the statement's first token
    rule: str
    detail: str = ""  # a syntax error's own message

    def __str__(self) -> str:
        if self.rule == "syntax":
            return f"{self.file}:{self.line}: syntax: {self.detail}"
        why, instead = RULES[self.rule]
        return f"{self.file}:{self.line}: {self.rule}: {why}; instead: {instead}"


class Facts(Protocol):
    """What the server knows (catalog.py); absent in an offline check."""

    def exists(self, table: str) -> bool: ...

    def volatile(self, functions: set[str]) -> set[str]: ...

    def not_null_checked(self, table: str, column: str) -> bool: ...


@dataclass
class Run:
    """What the statements checked so far did, in file order."""

    facts: Facts | None = None
    new: set[str] = field(default_factory=set)  # tables and indexes created in this run
    checks: dict[str, tuple[str, str]] = field(default_factory=dict)  # NOT VALID (col IS NOT NULL) checks
    not_null: set[tuple[str, str]] = field(default_factory=set)  # (table, column) proved not null

    def live(self, rel: ast.RangeVar | None) -> bool:
        # names only: a table created in any schema counts as new under that name
        return rel is not None and rel.relpersistence != "t" and rel.relname not in self.new


class ServerFacts:
    """:class:`Facts` read on the migration's connection (nothing is written)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def _one(self, query: str, args: tuple[object, ...]) -> Any:
        row = self.conn.execute(query, args).fetchone()
        return row[0] if row else None

    def exists(self, table: str) -> bool:
        return bool(self._one("select to_regclass(quote_ident(%s)) is not null", (table,)))

    def volatile(self, functions: set[str]) -> set[str]:
        """The functions that are volatile in some overload, or unknown (created in this run)."""
        rows = self.conn.execute(
            "select proname from pg_proc where proname = any(%s) group by proname "
            "having bool_and(provolatile <> 'v')",
            (sorted(functions),),
        ).fetchall()
        return functions - {r[0] for r in rows}

    def not_null_checked(self, table: str, column: str) -> bool:
        """A validated ``CHECK (column IS NOT NULL)`` exists: SET NOT NULL will not scan."""
        return bool(
            self._one(
                "select exists (select 1 from pg_constraint where conrelid = to_regclass(quote_ident(%s)) "
                "and contype = 'c' and convalidated "
                "and pg_get_constraintdef(oid) = format('CHECK ((%%I IS NOT NULL))', %s::text))",
                (table, column),
            )
        )


def summary(findings: list[Finding], applying: bool) -> str:
    """The one-line error after the findings were listed."""
    what = "nothing was applied; " if applying else ""
    advice = (
        f"{what}make each safe, move it to a '-- contract' file, or acknowledge it with "
        "'-- unsafe-ok: <reason>'"
    )
    if len(findings) == 1:
        return f"unsafe migration statement: {findings[0]}; {advice}"
    return f"{len(findings)} unsafe migration statements (listed above; the first: {findings[0]}); {advice}"


def require() -> None:
    """Raise :class:`Unavailable` (exit 2, how to install it) without pglast."""
    try:
        import pglast  # noqa: F401
    except ImportError:
        raise Unavailable(
            f"the unsafe-operation check needs pglast, which is not installed: {INSTALL}"
        ) from None


def check(migrations: list[Migration], facts: Facts | None = None) -> list[Finding]:
    """Findings in the files of one run (pending, in version order), contract
    files skipped; ``facts`` from the server, or None to judge by the files alone.
    Raises :class:`Unavailable` without pglast."""
    require()
    run = Run(facts)
    return [f for m in migrations if not m.contract for f in _file(m, run)]


def _file(m: Migration, run: Run) -> list[Finding]:
    from pglast import parse_sql
    from pglast.parser import ParseError, scan

    sql = m.sql

    def line(index: int) -> int:
        return sql.count("\n", 0, index) + 1

    try:
        parsed = parse_sql(sql)
        tokens = scan(sql)  # character indexes, end inclusive; comments included
    except ParseError as exc:  # args: message, 0-based index (None: at the end)
        at = exc.args[1] if len(exc.args) > 1 and exc.args[1] is not None else len(sql)
        return [Finding(m.file, line(at), "syntax", str(exc.args[0]))]
    comments = [t for t in tokens if t.name in ("SQL_COMMENT", "C_COMMENT")]
    code = [t for t in tokens if t.name not in ("SQL_COMMENT", "C_COMMENT")]
    out: list[Finding] = []
    previous_end = 0
    for raw in parsed:
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(sql)
        # PostgreSQL 18's grammar (pglast 8) starts a statement at its first
        # token, older ones right after the previous semicolon
        first = next((t.start for t in code if t.start >= start), start)
        markers = [
            match.group(1)
            for c in comments
            if _belongs(c.start, previous_end, end, line)
            and (match := MARKER.match(sql[c.start : c.end + 1]))
        ]
        previous_end = end
        rules = list(dict.fromkeys(_rules(raw.stmt, run, m.transactional))) if raw.stmt is not None else []
        if markers and not all(markers):
            rules.append("ack-needs-reason")
        elif markers:
            rules = []
        out += [Finding(m.file, line(first), rule) for rule in rules]
    return out


def _belongs(at: int, previous_end: int, end: int, line: Callable[[int], int]) -> bool:
    """A comment is a statement's if it is between the previous statement's
    line and the statement's end, or after its end on its last line."""
    if previous_end <= at < end:
        return not previous_end or line(at) != line(previous_end)
    return at >= end and line(at) == line(end)


def _rules(stmt: ast.Node, run: Run, transactional: bool) -> list[str]:
    from pglast import ast
    from pglast.enums import ObjectType

    if isinstance(stmt, ast.CreateStmt) and stmt.relation is not None:
        # IF NOT EXISTS may name a table that is there, and live: the server knows
        existed = (
            stmt.if_not_exists and run.facts is not None and run.facts.exists(stmt.relation.relname or "")
        )
        if not existed:
            run.new.add(stmt.relation.relname or "")
    elif isinstance(stmt, ast.CreateTableAsStmt) and stmt.into is not None and stmt.into.rel is not None:
        run.new.add(stmt.into.rel.relname or "")
    elif isinstance(stmt, ast.SelectStmt) and stmt.intoClause is not None and stmt.intoClause.rel is not None:
        run.new.add(stmt.intoClause.rel.relname or "")
    elif isinstance(stmt, ast.DropStmt):
        return _drop(stmt, run)
    elif isinstance(stmt, ast.RenameStmt):
        live = run.live(stmt.relation)
        if stmt.renameType == ObjectType.OBJECT_TABLE and live:
            return ["rename-table"]
        if stmt.renameType == ObjectType.OBJECT_TABLE:
            run.new.add(stmt.newname or "")  # a new table under a new name is still new
        elif stmt.renameType == ObjectType.OBJECT_COLUMN and live:
            return ["rename-column"]
    elif isinstance(stmt, ast.IndexStmt):
        run.new.add(stmt.idxname or "")
        if stmt.concurrent and transactional:
            return ["needs-no-transaction"]
        if not stmt.concurrent and run.live(stmt.relation):
            return ["index-concurrently"]
    elif isinstance(stmt, ast.ReindexStmt):
        concurrently = any(p.defname == "concurrently" for p in stmt.params or ())
        if concurrently and transactional:
            return ["needs-no-transaction"]
        if not concurrently and (stmt.relation is None or stmt.relation.relname not in run.new):
            return ["reindex-concurrently"]
    elif isinstance(stmt, ast.VacuumStmt):
        full = any(o.defname == "full" for o in stmt.options or ())
        if full and any(run.live(r.relation) for r in stmt.rels or ()):
            return ["rewrite-table"]
    elif isinstance(stmt, ast.ClusterStmt) and run.live(stmt.relation):
        return ["rewrite-table"]
    elif isinstance(stmt, ast.AlterTableStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        return [rule for cmd in stmt.cmds or () if (rule := _alter(cmd, stmt.relation, run))]
    return []


def _drop(stmt: ast.DropStmt, run: Run) -> list[str]:
    from pglast.enums import ObjectType

    names = [obj[-1].sval for obj in stmt.objects or () if isinstance(obj, tuple) and obj]
    if stmt.removeType == ObjectType.OBJECT_TABLE:
        return ["drop-table" for name in names if name not in run.new]
    if stmt.removeType == ObjectType.OBJECT_INDEX and not stmt.concurrent:
        return ["drop-index-concurrently" for name in names if name not in run.new]
    return []


def _alter(cmd: ast.AlterTableCmd, relation: ast.RangeVar | None, run: Run) -> str | None:
    from pglast import ast
    from pglast.enums import AlterTableType as At
    from pglast.enums import ConstrType

    table = relation.relname or "" if relation is not None else ""
    d = cmd.def_
    if cmd.subtype == At.AT_AddConstraint and isinstance(d, ast.Constraint):
        column = _not_null_check(d)
        if column is not None and d.skip_validation:
            run.checks[d.conname or ""] = (table, column)
        elif column is not None:
            run.not_null.add((table, column))
    elif cmd.subtype == At.AT_ValidateConstraint and (cmd.name or "") in run.checks:
        run.not_null.add(run.checks[cmd.name or ""])
    if not run.live(relation):
        return None
    if cmd.subtype == At.AT_DropColumn:
        return "drop-column"
    if cmd.subtype == At.AT_AlterColumnType:
        return "change-type"
    if cmd.subtype == At.AT_SetNotNull:
        column = cmd.name or ""
        proved = (table, column) in run.not_null or (
            run.facts is not None and run.facts.not_null_checked(table, column)
        )
        return None if proved else "set-not-null"
    if cmd.subtype == At.AT_AddColumn and isinstance(d, ast.ColumnDef):
        return _added_column(d, run)
    if cmd.subtype == At.AT_AddConstraint and isinstance(d, ast.Constraint):
        if d.contype in (ConstrType.CONSTR_CHECK, ConstrType.CONSTR_FOREIGN) and not d.skip_validation:
            return "constraint-not-valid"
        if d.contype in (ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_UNIQUE) and not d.indexname:
            return "add-unique"
    return None


def _added_column(column: ast.ColumnDef, run: Run) -> str | None:
    """A column added with what rewrites the table, or with a constraint
    built or checked while ADD COLUMN holds ACCESS EXCLUSIVE."""
    from pglast import ast
    from pglast.enums import ConstrType

    if _rewrites(column, run):
        return "volatile-default"
    kinds = {c.contype for c in column.constraints or () if isinstance(c, ast.Constraint)}
    if kinds & {ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_UNIQUE}:
        return "add-unique"
    if kinds & {ConstrType.CONSTR_FOREIGN, ConstrType.CONSTR_CHECK}:
        return "constraint-not-valid"
    return None


def _not_null_check(d: ast.Constraint) -> str | None:
    """The column of a ``CHECK (col IS NOT NULL)``, else None."""
    from pglast import ast
    from pglast.enums import ConstrType, NullTestType

    e = d.raw_expr
    if d.contype != ConstrType.CONSTR_CHECK or not isinstance(e, ast.NullTest):
        return None
    if e.nulltesttype != NullTestType.IS_NOT_NULL or not isinstance(e.arg, ast.ColumnRef):
        return None
    last = (e.arg.fields or ())[-1:]
    return str(last[0].sval) if last and isinstance(last[0], ast.String) else None


def _rewrites(column: ast.ColumnDef, run: Run) -> bool:
    """Whether adding this column rewrites the table."""
    from pglast import ast
    from pglast.enums import ConstrType

    names = column.typeName.names if column.typeName is not None else ()
    if names and isinstance(names[-1], ast.String) and names[-1].sval in SERIAL:
        return True
    for c in column.constraints or ():
        if not isinstance(c, ast.Constraint):
            continue
        if c.contype == ConstrType.CONSTR_IDENTITY:
            return True
        # a virtual generated column (PostgreSQL 18; pglast 8) is computed on
        # read; before 18 (pglast 7, no such field) every one is stored
        if c.contype == ConstrType.CONSTR_GENERATED and getattr(c, "generated_kind", "s") == "s":
            return True
        if c.contype == ConstrType.CONSTR_DEFAULT and c.raw_expr is not None:
            called = {
                str(n.funcname[-1].sval)
                for n in _walk(c.raw_expr)
                if isinstance(n, ast.FuncCall) and n.funcname
            }
            unknown = called - STABLE
            if unknown and (run.facts is None or run.facts.volatile(unknown)):
                return True
    return False


def _walk(node: Any) -> Iterator[Any]:
    """Every node of an expression tree, the root first."""
    from pglast import ast

    if isinstance(node, ast.Node):
        yield node
        for name in node:
            yield from _walk(getattr(node, name))
    elif isinstance(node, tuple):
        for item in node:
            yield from _walk(item)
