"""The ``pydock`` command line: parsing flags, calling the layers below, printing results.

The top floor: it may import every other package of ``core``, and nothing imports it.
Each command lives in the module of its kind and is imported only when it runs, and
commands import what they need inside their function, so ``pydock run`` loads only the run
path (``tests/test_import_budget.py`` holds it to that).

Where to start:

* :func:`pydock.core.cli.main.main`: the entry point, and ``COMMANDS``: which module holds
  which command (``run.py``, ``containers.py``, ``images.py``, ``storage.py``, ``bench.py``).
* :mod:`pydock.core.cli.views`: the rows and tables of ``ps``, ``image ls`` and ``storage ls``.
"""
