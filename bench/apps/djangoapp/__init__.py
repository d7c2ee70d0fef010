"""Django test app of bench/memory.py: admin, auth, contenttypes, sessions,
messages, staticfiles, humanize, templates and i18n (own catalogs for fr, de,
es, ja under locale/, compiled at bench start; Django's own for the admin).

State (the sqlite file, the compiled catalogs) lives in ``$MEMBENCH_STATE``,
a directory the bench creates and removes, so that the tree stays clean.
Anonymous GETs never query the database, except ``/db/``."""
