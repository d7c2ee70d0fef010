"""The signals the master handles (docs/reference.md#signals-to-the-master), in one place:
the master installs handlers for them, blocks them around fork, and a new
worker resets them before taking the ones it acts on."""

from __future__ import annotations

import signal

MASTER = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,  # only to say it does nothing here: its default action would end the master
    signal.SIGCHLD,
)
STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
# master -> a stuck worker: "write every thread's stack to stderr" (SIGKILL follows).
# Not SIGABRT: Python cannot catch it without aborting, which can leave core files.
DUMP = signal.SIGUSR2
