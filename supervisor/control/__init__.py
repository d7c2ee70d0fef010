"""Reaching a running master: its control socket, its pid file, its health endpoint.

Server side (in the master, on its selector, no thread): ``server`` answers
the control socket, ``health`` answers ``/readyz`` (and ``/metrics``), both on
``loopserver``'s client bookkeeping. What a command does to the master is
``supervisor.master.commands``. Client side (``supervise status``, ``reload``,
``scale``, ``stop``): ``client``. Both sides find the socket through ``paths``
and the pid file through ``pidfile``.
"""
