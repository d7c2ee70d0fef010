import time


def worker_ready(worker):
    time.sleep(30)
