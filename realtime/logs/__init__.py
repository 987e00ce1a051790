"""Server log files that staff may follow live: which ones, who may read them, their lines."""
