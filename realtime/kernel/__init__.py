"""The shared kernel: what domains and interfaces both speak, importing neither.

Frames and their schemas (`events`), group and channel names (`names`), and the one
after-commit bridge to the channel layer (`broadcast`, which reads asgiref's private
per-thread loop through `asgiref_internals`). `dependency_checks` is what each module that
reaches into a dependency's private parts builds its start-up `check()` from.
"""
