"""Optional integrations: each is imported only by code that asks for it, so
the core runs without gunicorn, SQLAlchemy or prometheus_client installed."""
