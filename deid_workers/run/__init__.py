"""A run's state in Redis, without Celery: its plan, record, keys, store, log and reports."""
