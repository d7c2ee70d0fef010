"""Every response says which worker served it (the bench's X-Worker-Pid convention)."""

import os


def worker_pid(get_response):
    def middleware(request):
        response = get_response(request)
        response["X-Worker-Pid"] = str(os.getpid())
        return response

    return middleware
