import os


def after_fork(worker):
    raise ValueError(f"after_fork broke in worker {worker.id}")


def on_exit(master):
    with open(os.environ["HOOKS_LOG"], "a") as f:
        f.write(f"on_exit {master.exit_code}\n")
