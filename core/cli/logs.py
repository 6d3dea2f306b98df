"""``pydock logs``: a container's output, whole or its tail, since a time, with times."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from pydock.core.cli.common import Context, pass_context
from pydock.core.errors import PydockError

if TYPE_CHECKING:
    from pydock.core.runtime.logs import Entry

# Go's time.ParseDuration units, as docker's --since takes them ("1h30m", "90s").
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60,
                   "h": 3600}
_DURATION = r"(?:[0-9]+(?:\.[0-9]*)?(?:ns|us|µs|ms|s|m|h))+"


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the container ends.")
@click.option("-n", "--tail", default="all", show_default=True, metavar="N|all",
              help="Only the last N lines.")
@click.option("--since", metavar="TIME",
              help="Only output since TIME: RFC 3339 (2026-12-05T10:00:00Z), Unix seconds, "
                   "or a duration ago (10m, 1h30m).")
@click.option("-t", "--timestamps", is_flag=True, help="Start each line with its time.")
@click.argument("name")
@pass_context
def logs(ctx: Context, follow: bool, tail: str, since: str | None, timestamps: bool,
         name: str) -> None:
    """Show a container's output: stdout and stderr, in the order it wrote them."""
    from pydock.core.runtime.logs import STDERR, STDOUT, lines

    last = parse_tail(tail)
    since_ns = parse_since(since) if since is not None else None
    containers = ctx.containers()
    name = containers.resolve(name)
    entries: Iterator[Entry] = containers.log_entries(name, follow)
    if last is not None or since_ns is not None or timestamps:
        entries = lines(entries)
        if since_ns is not None:
            entries = (entry for entry in entries if entry.time_ns >= since_ns)
        if last is not None:
            # Counted in what is there now; with -f, what comes next follows.
            there = sum(1 for entry in lines(containers.log_entries(name, False))
                        if since_ns is None or entry.time_ns >= since_ns)
            entries = _skip(entries, max(0, there - last))
    outputs = {STDOUT: sys.stdout.buffer, STDERR: sys.stderr.buffer}
    try:
        for entry in entries:
            out = outputs[entry.stream]
            if timestamps:
                out.write(format_time(entry.time_ns).encode() + b" ")
            out.write(entry.data)
            out.flush()
    except BrokenPipeError:  # `pydock logs NAME | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _skip(entries: Iterator[Entry], count: int) -> Iterator[Entry]:
    for index, entry in enumerate(entries):
        if index >= count:
            yield entry


def parse_tail(text: str) -> int | None:
    """``--tail``: a number of lines, or ``all`` (None); docker takes a negative as all."""
    if text == "all":
        return None
    if not re.fullmatch(r"-?[0-9]{1,18}", text):
        raise PydockError(f"invalid --tail {text!r}: expected a number of lines or all")
    return None if int(text) < 0 else int(text)


def parse_since(text: str, now: float | None = None) -> int:
    """``--since``, as docker takes it, in nanoseconds since the epoch."""
    now = time.time() if now is None else now
    if re.fullmatch(_DURATION, text):
        seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in
                      re.findall(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)", text))
        return int((now - seconds) * 1e9)
    if re.fullmatch(r"[0-9]{1,12}(?:\.[0-9]{1,9})?", text):
        whole, _, fraction = text.partition(".")
        return int(whole) * 10**9 + int(fraction.ljust(9, "0") or 0)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PydockError(f"invalid --since {text!r}: expected a time (RFC 3339 or Unix "
                          "seconds) or a duration such as 10m") from None
    if moment.tzinfo is None:  # docker reads a time without a zone as local time
        moment = moment.astimezone()
    return int(moment.timestamp() * 10**9)


def format_time(time_ns: int) -> str:
    """RFC 3339 with nanoseconds in UTC, as docker's ``logs -t`` prints it."""
    if not time_ns:
        return "0001-01-01T00:00:00.000000000Z"  # docker's zero time: a log older than -t
    seconds, nanoseconds = divmod(time_ns, 10**9)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{nanoseconds:09d}Z")
