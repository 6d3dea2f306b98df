"""Test helpers shipped with pydock, for pydock's own tests and for driver authors.

``pydock.testing.manifest`` describes a directory tree as comparable data.
"""
