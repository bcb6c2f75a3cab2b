"""Helpers the test folders share (fixtures live in the conftest.py files)."""
