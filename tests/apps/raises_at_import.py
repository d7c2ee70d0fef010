SETTINGS = {}
PORT = SETTINGS["port"]


def main(worker):
    pass
