import nonexistent_dependency_xyz  # noqa: F401


def main(worker):
    pass
