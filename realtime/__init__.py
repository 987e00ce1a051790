"""Live updates: `kernel/` (frames, names, the after-commit publisher) and `sockets/` (the runtime).

Domains import `realtime.kernel` only; nothing in `realtime.kernel` imports a domain or an
interface (`make check` enforces it).
"""
