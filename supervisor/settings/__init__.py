"""Every setting, declared once.

``config`` gathers the groups (``workers``, ``serving``, ``postgresql``,
``process``) into :class:`~supervisor.settings.config.Config`; ``declare`` is
the vocabulary they are declared in (``Setting``, ranges); ``load`` reads
them from defaults, a config file, the environment and the command line;
``envfile`` and ``cpus`` are what loading needs from outside (``--env-file``,
the CPUs this process may use). The CLI options, the ``SUPERVISE_*``
variables, the file keys and docs/reference.md all derive from the fields.
"""
