"""What the master's helpers may read of the master, and the few things they
may ask it to do. :class:`~supervisor.master.loop.Master` is the one
implementation; declaring it here, below the helpers, keeps the package free
of import cycles.

Every attribute is read-only: a helper computes and returns what it decided
(``startup.Started``, ``exits.Verdict``, a control ``Reply``), and the master,
the one owner of its state, applies it. The methods are the owner's own
actions (spawn, stop, scale, reload), which a signal would take the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from supervisor.context import MasterInfo
    from supervisor.hooks import Hooks
    from supervisor.master.handle import Replacement, Slot, StopMode, WorkerHandle
    from supervisor.master.processes import Processes
    from supervisor.master.started import Started
    from supervisor.master.wakeup import Wakeup
    from supervisor.settings.config import Config
    from supervisor.target import Target


class Reads(Protocol):
    """The master's state, as every helper reads it."""

    @property
    def config(self) -> Config: ...

    @property
    def started(self) -> Started: ...  # what start-up opened: listeners, servers, budget

    @property
    def slots(self) -> Mapping[int, Slot]: ...

    @property
    def children(self) -> Mapping[int, WorkerHandle]: ...

    @property
    def stopping(self) -> StopMode | None: ...

    @property
    def wakeup(self) -> Wakeup: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    def ready_count(self) -> int: ...

    def request_reload(self, now: float) -> None: ...


class MasterView(Reads, Protocol):
    """What start-up, ``status`` and the control commands see."""

    @property
    def hooks(self) -> Hooks: ...

    @property
    def target(self) -> Target | None: ...

    @property
    def booted(self) -> bool: ...

    @property
    def started_at(self) -> float: ...

    @property
    def reloading(self) -> bool: ...

    def replacing(self) -> bool: ...

    def info(self, exit_code: int | None = None) -> MasterInfo: ...

    def scale(self, workers: int) -> str | None: ...

    def begin_stop(self, mode: StopMode, reason: str) -> None: ...

    def user_stop(self, reason: str, fast: bool = False) -> None: ...

    @property
    def procs(self) -> Processes: ...


class RolloutView(Reads, Protocol):
    """What the rolling replacement (``rolling.Rollout``) sees."""

    @property
    def procs(self) -> Processes: ...

    @property
    def old_lifelines(self) -> list[int]: ...  # after a re-exec: what the adopted workers watch

    def spawn(
        self,
        slot: Slot,
        now: float,
        replacing: WorkerHandle | None = ...,
        why: Replacement = ...,
        reason: str = ...,
    ) -> WorkerHandle | None: ...


class ReforkView(Reads, Protocol):
    """What reforking (``refork.Reforker``) sees."""

    @property
    def procs(self) -> Processes: ...

    @property
    def reloading(self) -> bool: ...

    def replacing(self) -> bool: ...

    def recycle(self, handle: WorkerHandle, reason: str, now: float) -> None: ...

    def fork_seed(self, now: float) -> WorkerHandle: ...
