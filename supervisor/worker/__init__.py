"""Inside a worker: the process tree's lower half.

``public`` is the public :class:`Worker`; ``child`` is the life after fork
(reset, boot, run, exit); ``control_thread`` the thread that handles signals,
the master's commands and the worker's limits; ``runtime`` what a runner may
use; ``runners/`` the table of what runs each kind of target (the HTTP
engines themselves are ``supervisor.http``).
"""

from supervisor.worker.public import Worker

__all__ = ["Worker"]
