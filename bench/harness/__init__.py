"""The one benchmark harness: who is launched how (``peers``), one start/stop
helper for a server under test (``server``), load and its parsing (``load``),
/proc readings (``procs``), one results format (``results``) and the shared
command line (``cli``). Stdlib only, loopback only, every wait bounded."""
