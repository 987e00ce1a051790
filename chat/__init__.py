"""Chat domain: rooms and their messages."""
