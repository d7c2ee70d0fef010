"""The one benchmark harness: who is launched how (``peers``), one start/stop
helper for a server under test (``server``), load and its parsing (``load``),
/proc readings (``procs``), one results format (``results``) and the shared
command line (``cli``); for ``supervisor_bench.py``, its lifecycle trial
(``lifecycle_trial``), report tables (``lifecycle_tables``), run environment
(``environment``) and source provenance (``provenance``). Stdlib only, loopback
only, every wait bounded."""
