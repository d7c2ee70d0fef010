"""The master process: the process tree's upper half.

``loop`` is the loop and its decisions; ``handle`` the master's view of one
worker; ``rolling`` reloads and recycles, one replacement at a time;
``startup`` the steps before the first fork; ``forker`` the process seam.
"""

from supervisor.master.loop import Master

__all__ = ["Master"]
