"""Django's PostgreSQL backend for a pooled process: ``base.DatabaseWrapper`` (the ``ENGINE``
``anycompany.settings`` picks when ``DATABASE_POOL_SIZE`` is on)."""
