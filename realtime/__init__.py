"""WebSocket interface: the `/ws/` gateway, protocol frames, broadcast bridge and presence."""
