import sys

from supervisor import Supervisor


def main(worker):
    worker.stopping.wait()


def boom_boot(worker):
    raise RuntimeError("no boot")


if __name__ == "__main__":
    sup = Supervisor(main, workers=2, log_format="json", boot_timeout=5)
    if sys.argv[1:] == ["fail"]:
        sup.after_fork(boom_boot)
    sys.exit(sup.run())
