"""compare.py's report: the times, the ratios to the other tools and the targets, as text or
Markdown tables."""

from __future__ import annotations

from compare_figures import (
    BASELINE_LIMIT_SECONDS,
    BASELINE_OVERLAY,
    BASELINES,
    COPY_PREPARE,
    PYDOCK_FIGURES,
    PYDOCK_OVERLAY,
    TARGETS,
    Figure,
    difference,
    figures,
    ratio,
)
from compare_measure import WARMUP_ROUNDS, Series
from compare_trees import LARGE, SMALL, Tree


def table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [headers, ["---"] * len(headers), *rows]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [headers, ["-" * width for width in widths], *rows]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(cells, widths,
                                                                         strict=True)).rstrip()
                     for cells in lines)


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def report(all_series: list[Series], trees: list[Tree], header: list[str], notes: list[str],
           markdown: bool) -> str:
    found = figures(all_series)
    times_rows = []
    for one in all_series:
        figure = found.get((one.image, one.label))
        if figure is not None:
            times_rows.append([one.image, one.label, ms(figure.median), ms(figure.low),
                               ms(figure.high), str(figure.runs)])
        else:
            times_rows.append([one.image, one.label, "failed", "-", "-", "0"])
    prepare = found.get((LARGE, COPY_PREPARE))
    if prepare is not None:
        times_rows.append([LARGE, COPY_PREPARE, ms(prepare.median), "-", "-", "-"])

    ratio_rows = []
    for tree in trees:
        for label in PYDOCK_FIGURES:
            if (tree.name, label) not in found:
                continue
            cells = [tree.name, label, ms(found[tree.name, label].median)]
            for baseline in BASELINES:
                value = ratio(found, tree.name, label, tree.name, baseline)
                cells.append("-" if value is None else f"{value:.2f}x")
            ratio_rows.append(cells)

    target_rows = []
    for target in TARGETS:
        value = ratio(found, target.image, target.figure, target.baseline_image,
                      target.baseline)
        verdict = "n/a" if value is None else "PASS" if value <= target.limit else "FAIL"
        target_rows.append([target.what, "-" if value is None else f"{value:.2f}x",
                            f"<= {target.limit:.2f}x", verdict])

    target_rows += _baseline_rows(found)

    images = "; ".join(f"{tree.name}: {tree.entries:,} entries, {tree.size / 1e6:.1f} MB"
                       for tree in trees)
    # In markdown the header lines would run together into one paragraph: make them a
    # list, and the titles bold.
    def title(text: str) -> str:
        return f"**{text}**" if markdown else text

    sections = [
        *(f"- {line}" if markdown else line for line in [*header, f"images: {images}"]),
        "",
        title("Times in ms (end to end, fork to exit; counted runs after "
              f"{WARMUP_ROUNDS} warm-up round)"),
        "",
        table(["image", "command", "median", "min", "max", "runs"], times_rows, markdown),
        "",
        title("pydock against the others (medians on the same image; below 1 is pydock "
              "faster)"),
        "",
        table(["image", "pydock", "median ms", *(f"/ {b}" for b in BASELINES)], ratio_rows,
              markdown),
        "",
        title("Targets"),
        "",
        table(["target", "measured", "limit", "result"], target_rows, markdown),
    ]
    if notes:
        sections += ["", title("Notes"), "", *(f"- {line}" for line in notes)]
    return "\n".join(sections)


def _baseline_rows(found: dict[tuple[str, str], Figure]) -> list[list[str]]:
    """The target row for --baseline: what this pydock's run adds to the baseline's."""
    added = difference(found, SMALL, PYDOCK_OVERLAY, BASELINE_OVERLAY)
    if added is None:
        return []
    value = ratio(found, SMALL, PYDOCK_OVERLAY, SMALL, BASELINE_OVERLAY)
    return [[f"overlay run vs the --baseline pydock, small image ({value:.2f}x)",
             f"{added * 1000:+.1f} ms", f"<= +{BASELINE_LIMIT_SECONDS * 1000:.0f} ms",
             "PASS" if added <= BASELINE_LIMIT_SECONDS else "FAIL"]]
