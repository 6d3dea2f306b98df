"""Rows and tables for the listing commands (ps, image ls, storage ls/info)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import click

from pydock.core.containers.lifecycle import Containers
from pydock.core.containers.liveness import live_status
from pydock.core.containers.state import RUNNING, CorruptRecord, Remains
from pydock.core.errors import PydockError
from pydock.core.images.store import ImageStore
from pydock.core.plugins import DriverEntry, DriverRegistry, availability_of, driver_home


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Left-aligned columns, upper-case headers, like docker's tables."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    for line in [[c.upper() for c in columns], *cells]:
        click.echo("   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def container_rows(containers: Containers, show_all: bool, no_trunc: bool = False) -> list[
        dict[str, Any]]:
    """``ps``'s rows, newest first as docker lists them."""
    rows = []
    for name in containers.state.names():
        try:
            record = containers.state.load(name)
        except CorruptRecord:
            if show_all:  # never trusted, never hidden either: `rm -f` is what it needs
                rows.append(_corrupt_row(name, containers.state.salvage(name)))
            continue
        except PydockError:  # removed meanwhile
            continue
        status = live_status(record)
        if not show_all and status != RUNNING:
            continue
        command = " ".join(record.command)
        if not no_trunc and len(command) > COMMAND_WIDTH:
            command = command[:COMMAND_WIDTH] + "..."
        rows.append({
            "ID": record.id if no_trunc else record.id[:12], "FullID": record.id,
            "Image": record.image, "Command": go_quote(command),
            "Created": _ago(record.created), "CreatedAt": record.created,
            "Status": _status_text(status, record.exit_code, record.started, record.finished),
            "State": status, "Storage": record.driver, "Names": record.name,
        })
    # RFC 3339 in UTC, fixed width: the text sorts as the time does.
    rows.sort(key=lambda row: row["CreatedAt"], reverse=True)
    return rows


COMMAND_WIDTH = 30


def go_quote(text: str) -> str:
    """``text`` in double quotes as Go's strconv.Quote writes it, which is how docker's
    ``ps`` shows a command: a newline is ``\\n``, never a line break that would split the
    table's row; other control characters are ``\\xNN``."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif not char.isprintable():
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t", "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def filter_rows(rows: list[dict[str, Any]], filters: tuple[str, ...]) -> list[dict[str, Any]]:
    """docker ps ``--filter``: ``name=`` (a part of the name), ``status=`` (created,
    running, exited ...), ``id=`` (a prefix of the id). Several values of one key: any of
    them; several keys: all of them."""
    wanted: dict[str, list[str]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTERS:
            raise PydockError(f"invalid filter {item!r}: expected one of "
                              f"{', '.join(k + '=VALUE' for k in FILTERS)}")
        if key == "status" and value not in STATUSES:
            raise PydockError(f"invalid filter {item!r}: status is one of "
                              f"{', '.join(STATUSES)}")
        wanted.setdefault(key, []).append(value)
    return [row for row in rows
            if all(any(_matches(row, key, v) for v in values) for key, values in wanted.items())]


def _matches(row: dict[str, Any], key: str, value: str) -> bool:
    if key == "name":
        return value in str(row["Names"])
    if key == "status":
        return bool(row["State"] == value)
    return str(row["FullID"]).startswith(value)


FILTERS = ("name", "status", "id")
# docker's statuses; pydock's containers are only ever created, running or exited.
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def _corrupt_row(name: str, remains: Remains) -> dict[str, Any]:
    return {"ID": remains.id[:12], "FullID": remains.id, "Image": "", "Command": "",
            "Created": "", "CreatedAt": "",
            "Status": "corrupt record", "State": "corrupt", "Storage": remains.driver,
            "Names": name}


def image_rows(store: ImageStore) -> list[dict[str, Any]]:
    rows = []
    for image in store.all_images():
        # An unnamed image (loaded without a name, or untagged) is listed as docker does;
        # one pulled by digest alone has a repository but no tag.
        names = image.names or tuple(f"{d.partition('@')[0]}:<none>" for d in image.digests)
        for name in names or ("<none>:<none>",):
            repository, _, tag = name.rpartition(":")
            digest = next((d.partition("@")[2] for d in image.digests
                           if d.partition("@")[0] == repository), "<none>")
            rows.append({"Repository": repository, "Tag": tag, "Digest": digest,
                         "ID": image.id[7:19],
                         "Created": _ago(image.config.get("created", "")),
                         "Size": _human_size(store.size(image))})
    return rows


def image_details(store: ImageStore, reference: str) -> dict[str, Any]:
    image = store.resolve(reference)
    return {"Id": image.id, "RepoTags": list(image.names), "RepoDigests": list(image.digests),
            "Created": image.config.get("created", ""),
            "Architecture": image.config.get("architecture", ""),
            "Os": image.config.get("os", ""), "Size": store.size(image),
            "Config": image.run_config,
            "RootFS": {"Type": "layers", "Layers": image.diff_ids}}


def storage_rows(containers: Containers) -> list[dict[str, Any]]:
    return [_storage_row(containers, entry) for entry in containers.registry.entries()]


def _storage_row(containers: Containers, entry: DriverEntry) -> dict[str, Any]:
    availability = availability_of(entry.cls, driver_home(containers.root, entry.name))
    return {"Name": entry.name, "Plugin": entry.plugin, "Origin": entry.origin,
            "Available": availability.ok and not entry.conflict,
            "Reason": entry.conflict or availability.reason,
            "Class": f"{entry.cls.__module__}.{entry.cls.__qualname__}"}


def plugin_failure_rows(registry: DriverRegistry) -> list[dict[str, str]]:
    return [{"Plugin": f.plugin, "Origin": f.origin, "Error": f.reason}
            for f in registry.failures]


def disabled_plugin_rows(registry: DriverRegistry) -> list[dict[str, str]]:
    return [{"Plugin": d.plugin, "Origin": d.origin} for d in registry.disabled]


def storage_details(containers: Containers, name: str) -> dict[str, Any]:
    # driver_class() raises the one-line error for an unknown or clashing name.
    cls = containers.registry.driver_class(name)
    row = _storage_row(containers, next(e for e in containers.registry.entries()
                                        if e.name == name))
    users = [r.name for r in containers.records() if r.driver == name]
    return {**row, "Home": str(driver_home(containers.root, name)), "Containers": users,
            "Description": (cls.__doc__ or "").strip().split("\n\n")[0]}


def _status_text(status: str, exit_code: int | None, started: str, finished: str) -> str:
    if status == RUNNING:
        return f"Up {_duration(started)}"
    if status == "exited":
        code = "unknown" if exit_code is None else str(exit_code)
        return f"Exited ({code}) {_ago(finished)}" if finished else f"Exited ({code})"
    return status.capitalize()


def _seconds_since(timestamp: str) -> float | None:
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, time.time() - then.timestamp())


def _duration(timestamp: str) -> str:
    seconds = _seconds_since(timestamp)
    if seconds is None:
        return "?"
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} seconds"


def _ago(timestamp: str) -> str:
    duration = _duration(timestamp)
    return "" if duration == "?" else f"{duration} ago"


def _human_size(size: int) -> str:
    """Decimal units, as docker prints image sizes."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g}{unit}"
    return f"{size}B"
