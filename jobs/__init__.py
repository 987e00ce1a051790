"""Jobs domain: background work run by Celery workers."""
