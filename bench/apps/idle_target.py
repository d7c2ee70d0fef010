"""A worker that only waits (bench/db_bench.py's start-up rows); imports nothing else."""


def idle(worker):
    worker.stopping.wait()
