"""The socket runtime: `/ws/` and the tutorial route, the per-process hub and its feeds."""
