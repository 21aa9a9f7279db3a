"""Inspecting and re-encoding images: pure Python and Pillow. Never imports Django.

Bytes in, bytes out: downloads come through the net package, storage is the caller's.
"""
