"""Django's SQLite backend with the WAL checkpoint moved off the commit path (see `base`)."""
