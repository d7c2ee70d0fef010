import atexit
import os


def _bye():
    with open(os.environ["ATEXIT_LOG"], "a") as f:
        f.write(f"{os.getpid()}\n")


atexit.register(_bye)


def main(worker):
    worker.stopping.wait()
