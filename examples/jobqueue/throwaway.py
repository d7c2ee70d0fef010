"""A throwaway PostgreSQL for the demo, when the user gave none.

Only this example does this: production code never invents a database. It
reuses the test harness (:mod:`supervisor.testing.postgres`): a Docker
container when an engine answers, else a cluster made with ``initdb`` in a
temporary directory (run as the ``postgres`` user when we are root, because
PostgreSQL refuses to run as root). Either way it is deleted on exit.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import warnings
from collections.abc import Callable, Iterator

from supervisor.testing.postgres import container, local_cluster, pg_bindir


@contextlib.contextmanager
def throwaway_server(say: Callable[[str], None]) -> Iterator[str]:
    """Start a server, ``say`` one line about it, yield its URL; remove it on exit."""
    stack = contextlib.ExitStack()
    try:
        try:
            url = stack.enter_context(container())
            where = "a Docker container (testcontainers)"
        except Exception as container_error:
            # Without an engine, docker's client leaves a socket behind: collect it quietly.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
            if pg_bindir() is None:
                raise RuntimeError(
                    "no database given and none can be started here: pass --database-url or set "
                    "DATABASE_URL, install the PostgreSQL server binaries (initdb), or start Docker "
                    f"(Docker: {container_error})"
                ) from None
            cluster = stack.enter_context(local_cluster())
            url = cluster.url
            where = f"a local initdb cluster in {cluster.dir}"
        say(
            f"no DATABASE_URL or --database-url given: started a throwaway PostgreSQL in {where}; "
            "it is deleted on exit"
        )
        yield url
    finally:
        # Ctrl-C pressed again while the server is being removed must not leave
        # half of it behind; pg_ctl inherits the ignored signals too.
        old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            stack.close()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
