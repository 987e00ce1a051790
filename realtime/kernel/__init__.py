"""The shared kernel: what domains and interfaces both speak, importing neither.

Frames and their schemas (`events`), group and channel names (`names`), and the one
after-commit bridge to the channel layer (`broadcast`).
"""
