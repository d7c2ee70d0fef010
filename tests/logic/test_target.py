"""Target classification (main, WSGI, ASGI; sync or async) and module:attribute splitting."""

from __future__ import annotations

import pytest

from supervisor.errors import TargetError
from supervisor.target import Kind, classify, split


def _main(worker): ...
async def _amain(worker): ...
def _wsgi(environ, start_response): ...
async def _asgi(scope, receive, send): ...
def _two_defaults(a, b=1, c=2): ...


@pytest.mark.parametrize(
    ("obj", "kind", "is_async"),
    [
        (_main, Kind.MAIN, False),
        (_amain, Kind.MAIN, True),
        (_wsgi, Kind.WSGI, False),
        (_asgi, Kind.ASGI, True),
        (_two_defaults, Kind.MAIN, False),
    ],
)
def test_classify(obj, kind, is_async):
    target = classify("m:x", obj)
    assert (target.kind, target.is_async) == (kind, is_async)


def test_classify_refuses_what_it_cannot_tell():
    with pytest.raises(TargetError, match="cannot tell what kind of target"):
        classify("m:x", lambda a, b, c, d: None)
    with pytest.raises(TargetError, match="is a int, not a callable"):
        classify("m:x", 3)
    with pytest.raises(TargetError, match="must take one argument"):
        classify("m:x", _wsgi, "main")


def test_split():
    assert split("pkg.mod:obj.attr") == ("pkg.mod", "obj.attr")
    for bad in ("app", "app:", ":main"):
        with pytest.raises(TargetError, match="must look like 'module:attribute'"):
            split(bad)


class _Asgi2:
    def __init__(self, scope): ...

    async def __call__(self, receive, send): ...


def test_classify_asgi2_class():
    target = classify("m:x", _Asgi2)
    assert target.kind is Kind.ASGI
