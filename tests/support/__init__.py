"""Helpers that start and talk to real processes for the tests."""
