"""Inside a worker: the process tree's lower half.

``api`` is the public :class:`Worker`; ``process`` is the life after fork
(reset, boot, run, exit); ``control`` the thread that handles signals, the
master's commands and the worker's limits; ``runtime`` what a runner may use;
``runners/`` one module per kind of target, listed in one table.
"""

from supervisor.worker.api import Worker

__all__ = ["Worker"]
