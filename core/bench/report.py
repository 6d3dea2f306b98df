"""``pydock bench``'s results as a terminal table, JSON, Markdown or a plot.

The table and Markdown give one block per image, a row per measurement and a column per
driver, each cell "median (min-max) unit" in the median's unit, so that reading down a
column shows a driver's costs and reading across a row compares drivers. Under each block,
a line for every driver whose containers share storage: their disk together is far less
than their number times what each reports. JSON holds every sample. The plot needs
matplotlib, an optional extra (``pip install 'pydock[plot]'``), imported only here.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydock.core.bench.run import BYTES, MEASUREMENTS, BenchRun, ImageFacts, Measurement, Result
from pydock.core.errors import PydockError

_TIME_UNITS = ((1e9, "s"), (1e6, "ms"), (1e3, "us"), (1.0, "ns"))
_SIZE_UNITS = ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1.0, "B"))


def render(run: BenchRun, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(as_json(run), indent=2) + "\n"
    if fmt == "markdown":
        return _markdown(run)
    return _table(run)


def as_json(run: BenchRun) -> dict[str, Any]:
    return {
        "root": run.root,
        "host": run.host,
        "settings": {"repeat": run.options.repeat, "scale": run.options.scale,
                     "large_size_mb": None if run.options.images else run.options.large_size_mb},
        "drivers": run.drivers,
        "skipped": [{"driver": name, "reason": reason} for name, reason in run.skipped],
        "images": [asdict(facts) for facts in run.images],
        "measurements": [{"key": m.key, "label": _label(m, run), "unit": m.unit}
                         for m in MEASUREMENTS],
        "results": [{"driver": r.driver, "image": r.image, "measurement": r.measurement,
                     "unit": _measurement(r.measurement).unit, "min": r.min,
                     "median": r.median, "max": r.max, "samples": list(r.samples)}
                    for r in run.results],
        "notes": run.notes,
    }


def _table(run: BenchRun) -> str:
    lines = [_heading(run), ""]
    for facts in run.images:
        lines.append(f"{facts.reference}: {_image_line(facts)}")
        rows = [["MEASUREMENT", *(d.upper() for d in run.drivers)], *_rows(run, facts)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            # Labels to the left, numbers to the right, as in any table of figures.
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                            strict=True)]
            lines.append("   ".join(cells).rstrip())
        lines += [*_sharing(run, facts), ""]
    lines += [f"skipped {name}: {reason}" for name, reason in run.skipped]
    lines += [f"note: {note}" for note in run.notes]
    return "\n".join(lines).rstrip("\n") + "\n"


def _markdown(run: BenchRun) -> str:
    lines = [_heading(run), ""]
    for facts in run.images:
        lines += [f"### {facts.reference}", "", _image_line(facts, "`"), "",
                  "| measurement | " + " | ".join(run.drivers) + " |",
                  "| --- |" + " ---: |" * len(run.drivers)]
        lines += ["| " + " | ".join(row) + " |" for row in _rows(run, facts)]
        sharing = _sharing(run, facts)
        lines += ["", *sharing, ""] if sharing else [""]
    lines += [f"- skipped {name}: {reason}" for name, reason in run.skipped]
    lines += [f"- note: {note}" for note in run.notes]
    return "\n".join(lines).rstrip("\n") + "\n"


def _rows(run: BenchRun, facts: ImageFacts) -> list[list[str]]:
    """A row per measurement: its label, then a cell per driver."""
    return [[_label(m, run), *(_cell(run.result(d, facts.reference, m.key), m.unit)
                               for d in run.drivers)] for m in MEASUREMENTS]


def _heading(run: BenchRun) -> str:
    host = run.host
    return (f"pydock bench on {run.root} ({host['filesystem']}, kernel {host['kernel']}, "
            f"{host['cpus']} CPUs, load {host['load'][0]:.2f}): {run.options.repeat} "
            "repetitions, median (min-max)")


def _image_line(facts: ImageFacts, quote: str = "") -> str:
    layers = f"{facts.layers} layer" + ("s" if facts.layers != 1 else "")
    line = f"{_size(facts.size)} in {facts.files} files, {layers}"
    if facts.write_target:
        line += (f"; writes go to {quote}{facts.write_target}{quote} "
                 f"({_size(facts.write_target_size)})")
    return line


def _sharing(run: BenchRun, facts: ImageFacts) -> list[str]:
    """A line per driver whose containers hold far less together than each reports."""
    lines = []
    count = run.options.scale
    for driver in run.drivers:
        each = run.result(driver, facts.reference, "disk")
        together = run.result(driver, facts.reference, "scale_disk")
        if each is None or together is None or count < 2:
            continue
        if together.median * 2 < count * each.median:
            lines.append(f"{driver}: its containers share storage: {count} of them hold "
                         f"{_size(together.median)} in all, not {count} x "
                         f"{_size(each.median)}")
    return lines


def _label(measurement: Measurement, run: BenchRun) -> str:
    return measurement.label.format(scale=run.options.scale)


def _measurement(key: str) -> Measurement:
    return next(m for m in MEASUREMENTS if m.key == key)


def _cell(result: Result | None, unit: str) -> str:
    """``median (min-max) unit``, all three in the median's unit; just one number when the
    three are equal (measured once)."""
    if result is None:
        return "-"
    scale, suffix = _unit(result.median, _SIZE_UNITS if unit == BYTES else _TIME_UNITS)
    median = _digits(result.median / scale)
    if result.min == result.max:
        return f"{median} {suffix}"
    return f"{median} ({_digits(result.min / scale)}-{_digits(result.max / scale)}) {suffix}"


def _size(value: int) -> str:
    scale, suffix = _unit(value, _SIZE_UNITS)
    return f"{_digits(value / scale)} {suffix}"


def _unit(value: float, units: tuple[tuple[float, str], ...]) -> tuple[float, str]:
    return next(((scale, suffix) for scale, suffix in units if value >= scale), units[-1])


def _digits(value: float) -> str:
    """Three significant digits, as far as the integer part allows."""
    if value == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def check_plot(path: Path) -> None:
    """Fail now, not after the whole bench, if the plot cannot be drawn or saved."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PydockError("--plot needs matplotlib, which is not installed: "
                          "pip install 'pydock[plot]'") from None
    if not path.parent.is_dir():
        raise PydockError(f"--plot: directory {path.parent} does not exist")


def write_plot(run: BenchRun, path: Path) -> None:
    """One panel per measurement: for each image a group of bars, one per driver, at the
    median, with whiskers to min and max, on a log scale (drivers differ by orders of
    magnitude). Saved as PNG whatever ``path``'s suffix."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed, and none is looked for
    from matplotlib import pyplot

    shown = [m for m in MEASUREMENTS if any(r.measurement == m.key for r in run.results)]
    columns = 3
    rows = math.ceil(len(shown) / columns)
    figure, axes = pyplot.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows),
                                   squeeze=False)
    width = 0.8 / max(1, len(run.drivers))
    for panel, measurement in zip(axes.flat, shown, strict=False):
        scale, suffix = 1e6, "MB" if measurement.unit == BYTES else "ms"
        for index, driver in enumerate(run.drivers):
            found = [(position, run.result(driver, facts.reference, measurement.key))
                     for position, facts in enumerate(run.images)]
            bars = [(position, r) for position, r in found if r is not None]
            panel.bar([p + index * width for p, _ in bars], [r.median / scale for _, r in bars],
                      width, label=driver,
                      yerr=[[(r.median - r.min) / scale for _, r in bars],
                            [(r.max - r.median) / scale for _, r in bars]], capsize=3)
        panel.set_title(f"{_label(measurement, run)} ({suffix})", fontsize=10)
        panel.set_yscale("log")
        panel.set_xticks([p + width * (len(run.drivers) - 1) / 2
                          for p in range(len(run.images))])
        panel.set_xticklabels([facts.reference.split("/")[-1] for facts in run.images],
                              fontsize=8)
    for panel in list(axes.flat)[len(shown):]:
        panel.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    figure.suptitle(_heading(run), fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    pyplot.close(figure)
