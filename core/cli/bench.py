"""``pydock bench``: storage approaches measured side by side."""

from __future__ import annotations

from pathlib import Path

import click

from pydock.core.cli.common import (
    Context,
    pass_context,
    require_root,
)


@click.command()
@click.option("--storage", "drivers", multiple=True, metavar="DRIVER[,DRIVER...]",
              help="Drivers to measure (default: every driver that works here, plugins "
                   "included).")
@click.option("--image", "images", multiple=True, metavar="IMAGE",
              help="An image to measure, instead of the default image and the large image "
                   "bench builds; repeatable.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True,
              help="Repetitions of each measurement, shown as median (min-max).")
@click.option("--scale", type=click.IntRange(min=1), default=50, show_default=True,
              help="Containers created together from each image for the scale rows.")
@click.option("--large-size", type=int, default=256, show_default=True, metavar="MB",
              help="Size of the large image in MB, at least 8 (built once per size and root).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]),
              default="table", show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Also draw the results as a PNG (needs: pip install 'pydock[plot]').")
@pass_context
def bench(ctx: Context, drivers: tuple[str, ...], images: tuple[str, ...], repeat: int,
          scale: int, large_size: int, fmt: str, plot: Path | None) -> None:
    """Measure what each storage driver costs on this machine.

    For every driver and image: prepare, write into and remove a container's storage, run
    /bin/true with `pydock run --rm`, measure its disk, and keep --scale containers at once.
    Images: the default image and a large one (256 MB in 8,372 files, six of them 32 MB),
    built on first use. Defaults take a few minutes; progress shows on a terminal.
    Everything bench creates is removed when it ends, also on Ctrl-C.
    """
    from pydock.core.bench import report as bench_report
    from pydock.core.bench.run import BenchOptions, run_bench

    require_root()
    if plot is not None:
        bench_report.check_plot(plot)
    results = run_bench(ctx.root, BenchOptions(drivers, images, repeat, scale, large_size))
    click.echo(bench_report.render(results, fmt), nl=False)
    if plot is not None:
        bench_report.write_plot(results, plot)

