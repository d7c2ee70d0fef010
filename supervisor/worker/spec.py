"""``WorkerSpec``: everything a new worker needs, prepared before ``fork()``
(by the master, or by the mold for the workers it forks)."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from supervisor.hooks import Hooks
from supervisor.settings.config import Config
from supervisor.shared import channel
from supervisor.target import Target

if TYPE_CHECKING:
    from supervisor.database.pools import Database
    from supervisor.http.sockets import Listener


@dataclass
class WorkerSpec:
    """Everything a child needs, prepared by the master before ``fork()``."""

    id: int
    config: Config
    hooks: Hooks
    target: Target | None  # already imported (preload), else imported in the child
    heartbeat: channel.Heartbeat = field(default_factory=channel.Heartbeat.none)
    report_fd: int = -1  # worker -> master lines
    lifeline_fd: int = -1  # end-of-file: the master is gone
    command_fd: int = -1  # master -> worker commands ("retire")
    close_fds: list[int] = field(default_factory=list)
    close_heartbeats: list[channel.Heartbeat] = field(default_factory=list)
    database: Database | None = None
    listeners: list[Listener] = field(default_factory=list)
    sigmask: set[int | signal.Signals] = field(default_factory=set)  # the master's, before fork
    generation: int = 0  # 0: forked by the master; N: by the mold of generation N
    refork_at: int = 0  # requests after which it tells the master "due" (0: never)
    mold_fd: int = -1  # the master's end of the mold's command socket: spawn through it (forker.py)
    seed: bool = False  # import the target and become the mold of generation 0, serving nothing
