"""The HTTP server each worker runs on the sockets the master bound.

``engines`` is the table of engines (``--http``: uvicorn, granian), each row
with the settings it cannot apply; ``uvicorn_engine`` and ``granian_engine``
serve an ASGI or WSGI target on one of them. Around uvicorn's protocol,
``protocol`` adds the hardening (head limits, header timeout, 100-continue,
HTTP/1.0, the head sent with the body) and ``stack`` what wraps the app
(``access_log``, proxy headers). A WSGI app runs behind ``wsgi_bridge``
(``wsgi_request``, ``wsgi_response``); on granian behind ``granian_apps`` and
``forwarded``. ``tls`` builds the TLS context, ``sockets`` binds and describes
the listeners (the master's side).
"""
