"""myapp.worker:main: the job the pytest plugin's example (docs/database.md) starts."""

from supervisor import Worker


def main(worker: Worker) -> None:
    while not worker.stopping.wait(1.0):
        with worker.db.connection() as conn:
            conn.execute("select count(*) from jobs")
