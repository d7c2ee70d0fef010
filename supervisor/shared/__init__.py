"""What both sides of the fork share: imported by the master and by every worker.

``channel`` is the report pipe and the shared-memory heartbeat (what a worker
tells the master); ``signals`` the signal sets (handled by the master, blocked
around fork, reset by a new worker); ``proctitle`` the names shown in ``ps``;
``reexec`` the handover of sockets and workers when a ``--preload`` master
re-executes itself; ``heap`` the free pages given back before a fork.
"""
