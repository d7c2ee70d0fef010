def on_starting(master):
    raise RuntimeError("cannot start today")
