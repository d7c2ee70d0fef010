"""Programmatic use: python prog.py"""

import os
import sys

from supervisor import Supervisor, Worker

sup = Supervisor("mains:wait", workers=2, log_format="json")


@sup.after_fork
def mark(worker: Worker) -> None:
    with open(os.environ["HOOKS_LOG"], "a") as f:
        f.write(f"after_fork {worker.id}\n")


if __name__ == "__main__":
    code = sup.run()
    with open(os.environ["HOOKS_LOG"], "a") as f:
        f.write(f"run returned {code}\n")
    sys.exit(code)
