"""Test helpers shipped with pydock, for pydock's own tests and for storage-driver authors.

* :mod:`pydock.testing.manifest` describes a directory tree as comparable data.
* :mod:`pydock.testing.conformance` is the storage-driver conformance suite: containerd's
  snapshotter cases and pydock's own, run against any registered driver. As root::

      pytest --pyargs pydock.testing --pydock-driver mydriver

  (``--pydock-driver`` is repeatable; without it the three built-in drivers are checked).
* :mod:`pydock.testing.pytest_plugin` adds that option to pytest (a ``pytest11`` entry point)
  and parametrizes ``pydock.testing.test_conformance``, the module that command collects.
"""
