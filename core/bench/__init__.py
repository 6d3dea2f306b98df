"""``pydock bench``: what each storage driver costs on this machine, measured.

Runs real containers on every available driver (so it sits above containers) and reports
the results as a table, JSON, Markdown or a plot.

May import: everything in ``core`` except :mod:`pydock.core.cli`.

Where to start:

* :func:`pydock.core.bench.run.run_bench`: the measurements.
* :mod:`pydock.core.bench.report`: how they are shown.
"""
