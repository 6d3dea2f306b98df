"""``pydock bench``: what each storage driver costs on this machine, from real operations.

The matrix is drivers x images x :data:`MEASUREMENTS`. Every number is a real operation on a
real mount, timed around that operation alone with :func:`time.perf_counter_ns`, or an
``lstat`` count of allocated blocks; nothing is estimated. For each driver and image, each
repetition goes:

1. ``prepare``: a first container of the image, timed around ``driver.prepare`` as ``pydock
   run`` calls it (for bind and btrfs that includes making the copy or base the image's
   containers share); ``disk``: the driver's own ``usage()`` of it;
2. ``prepare_next``: a second container while the first exists (bind and btrfs share);
3. ``first_write`` / ``second_write``: the first container's root mounted exactly as a
   container's is, in a private mount namespace (:mod:`pydock.core.runtime.mounted`), then an
   open + 4 KiB write + close of a large file of the image (overlay copies the whole file up
   here), then the same again in the middle of the file; ``disk_written``: ``usage()`` after.
   The file is the large image's ``/bench/large/0.bin``, or another image's largest file;
4. ``remove_next`` and ``remove``: ``driver.remove`` of the second container, then of the
   last one (bind and btrfs delete the shared copy or base with it);
5. ``run``: ``pydock run --rm --storage D --image I /bin/true`` as a subprocess of the real
   CLI on the same storage root, end to end: the user's view of all the above plus a start.

Then, once per driver and image, ``scale``: N containers of the image prepared one after
another (the sum of their prepare times), the disk they hold together (allocated blocks
under the driver's directory, each inode once, so what containers share counts once), and
the sum of their remove times.

Bench's containers live in storage of their own and are always removed
(:mod:`pydock.core.bench.storage`); the large image is built once per root
(:mod:`pydock.core.bench.image`); tables, JSON and plots are :mod:`pydock.core.bench.report`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import stat
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydock.core.bench.image import WRITE_TARGET, large_image, large_reference, plan
from pydock.core.bench.storage import STOP_SIGNALS, BenchStorage, bench_home
from pydock.core.containers.lifecycle import Containers
from pydock.core.driver import StorageDriver, tree_usage
from pydock.core.errors import PydockError
from pydock.core.files import DIR_FLAGS, TreeWalk
from pydock.core.images.store import DEFAULT_IMAGE, Image
from pydock.core.plugins import availability_of
from pydock.core.progress import StatusLine
from pydock.core.syscalls import open_in_root

NS, BYTES = "ns", "bytes"
# Built-ins first, in the order the README introduces them; plugins after, by name.
_BUILTIN_ORDER = ("overlay", "copy", "bind")
_BLOCK = b"\xa5" * 4096
# Scale stops before a container could leave less than this free (plus one image's size).
_FREE_RESERVE = 1 << 30


@dataclass(frozen=True)
class Measurement:
    key: str
    label: str  # "{scale}" stands for the number of containers
    unit: str
    once: bool = False  # measured once per driver and image, not once per repetition


MEASUREMENTS = (
    Measurement("prepare", "prepare, first container", NS),
    Measurement("prepare_next", "prepare, next container", NS),
    Measurement("first_write", "first write, large file", NS),
    Measurement("second_write", "second write, same file", NS),
    Measurement("remove_next", "remove, not the last", NS),
    Measurement("remove", "remove, last container", NS),
    Measurement("run", "run --rm /bin/true", NS),
    Measurement("disk", "disk, new container", BYTES),
    Measurement("disk_written", "disk, after the writes", BYTES),
    Measurement("scale_prepare", "{scale} containers: prepare", NS, once=True),
    Measurement("scale_remove", "{scale} containers: remove", NS, once=True),
    Measurement("scale_disk", "{scale} containers: disk", BYTES, once=True),
)


@dataclass(frozen=True)
class BenchOptions:
    drivers: tuple[str, ...] = ()  # names, each possibly "a,b"; none: every available one
    images: tuple[str, ...] = ()  # none: the default image and the large one
    repeat: int = 3
    scale: int = 50
    large_size_mb: int = 256


@dataclass
class ImageFacts:
    reference: str
    id: str
    size: int  # apparent bytes in its layers
    files: int  # entries other than directories in its layers
    layers: int
    write_target: str = ""  # the file the writes go to (found by the first write if "")
    write_target_size: int = 0


@dataclass(frozen=True)
class Result:
    driver: str
    image: str
    measurement: str
    samples: tuple[int, ...]

    @property
    def min(self) -> int:
        return min(self.samples)

    @property
    def median(self) -> int:
        return round(statistics.median(self.samples))

    @property
    def max(self) -> int:
        return max(self.samples)


@dataclass
class BenchRun:
    options: BenchOptions
    root: str
    host: dict[str, Any]
    drivers: list[str]
    images: list[ImageFacts]
    skipped: list[tuple[str, str]]  # (driver or plugin, why)
    notes: list[str] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)

    def result(self, driver: str, image: str, measurement: str) -> Result | None:
        return next((r for r in self.results if (r.driver, r.image, r.measurement) ==
                     (driver, image, measurement)), None)


def run_bench(root: Path, options: BenchOptions) -> BenchRun:
    """Run the whole matrix; everything it creates is gone when this returns or raises."""
    containers = Containers(root)
    if not options.images:
        plan(options.large_size_mb)  # a bad size fails before anything is done
    # Everything the user named is checked before any work: a typo costs nothing.
    classes, skipped = _select_drivers(containers, _names(options.drivers))
    named = [(ref, containers.images.resolve(ref), "") for ref in dict.fromkeys(options.images)]
    status = StatusLine()
    try:
        with _stop_signals_as_interrupt(), BenchStorage(containers) as storage:
            images = named or _bench_images(containers, options.large_size_mb, status)
            run = BenchRun(options, str(root), _host(root), [c.name for c in classes],
                           [_facts(containers, *image) for image in images], skipped)
            steps = [(facts, image, cls) for facts, (_ref, image, _target) in zip(
                run.images, images, strict=True) for cls in classes]
            for number, (facts, image, cls) in enumerate(steps, 1):
                label = f"[{number}/{len(steps)}] {cls.name} on {facts.reference}"
                _measure(run, storage, cls(storage.home(cls.name)), image, facts, label, status)
    finally:
        status.clear()
    return run


def _names(values: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(name.strip() for value in values for name in value.split(",")))


def _select_drivers(containers: Containers, names: list[str]
                    ) -> tuple[list[type[StorageDriver]], list[tuple[str, str]]]:
    """The driver classes to measure, and those left out with the reason.

    Named drivers must all work here; with none named, every registered driver that works
    here is measured and the others are listed as skipped, failed plugins included.
    """
    registry = containers.registry
    if names:
        classes = []
        for name in names:
            cls = registry.driver_class(name)
            availability = availability_of(cls, bench_home(containers.root, name))
            if not availability.ok:
                raise PydockError(f"storage driver {name!r} is not available here: "
                                  f"{availability.reason}")
            classes.append(cls)
        return classes, []
    registry.load_entry_points()
    chosen, skipped = [], []
    for entry in registry.entries():
        availability = availability_of(entry.cls, bench_home(containers.root, entry.name))
        if entry.conflict or not availability.ok:
            skipped.append((entry.name, entry.conflict or availability.reason))
        else:
            chosen.append(entry.cls)
    skipped.extend((f.plugin, f"plugin failed: {f.reason}") for f in registry.failures)
    order = {name: index for index, name in enumerate(_BUILTIN_ORDER)}
    chosen.sort(key=lambda cls: (order.get(cls.name, len(order)), cls.name))
    return chosen, skipped


def _bench_images(containers: Containers, size_mb: int, status: StatusLine
                  ) -> list[tuple[str, Image, str]]:
    """The default image and the large one, each built here if this root lacks it, with the
    file to write into where it is known."""
    store = containers.images
    try:
        default = store.resolve(DEFAULT_IMAGE)
    except PydockError:
        from pydock.core.images.default import build_default_image

        default = build_default_image(store)
    large = large_image(store, default, size_mb, status)
    return [(DEFAULT_IMAGE, default, ""), (large_reference(size_mb), large, WRITE_TARGET)]


def _facts(containers: Containers, reference: str, image: Image, write_target: str
           ) -> ImageFacts:
    store = containers.images
    files = sum(map(_count_files, store.layer_paths(image.diff_ids)))
    return ImageFacts(reference, image.id, store.size(image), files, len(image.diff_ids),
                      write_target)


def _measure(run: BenchRun, storage: BenchStorage, driver: StorageDriver, image: Image,
             facts: ImageFacts, label: str, status: StatusLine) -> None:
    layers = storage.containers.images.layer_paths(image.diff_ids)
    samples: dict[str, list[int]] = defaultdict(list)
    for repetition in range(1, run.options.repeat + 1):
        status.show(f"{label}: repetition {repetition}/{run.options.repeat}", now=True)
        first, elapsed = storage.prepare(driver, layers)
        samples["prepare"].append(elapsed)
        samples["disk"].append(driver.usage(first).bytes)
        second, elapsed = storage.prepare(driver, layers)
        samples["prepare_next"].append(elapsed)
        first_write, second_write = _write_twice(driver, first, layers, facts)
        samples["first_write"].append(first_write)
        samples["second_write"].append(second_write)
        samples["disk_written"].append(driver.usage(first).bytes)
        samples["remove_next"].append(storage.remove(second))
        samples["remove"].append(storage.remove(first))
        if not image.run_config.get("Entrypoint"):
            samples["run"].append(_run_cli(storage, driver.name, image))
    if "run" not in samples:
        run.notes.append(f"{driver.name} on {facts.reference}: run not measured: the image "
                         "has an Entrypoint, which would run instead of /bin/true")
    scale = _scale(storage, driver, layers, run.options.scale, facts, f"{label}: ", status)
    if isinstance(scale, str):
        run.notes.append(scale)
    else:
        samples.update(scale)
    run.results.extend(Result(driver.name, facts.reference, m.key, tuple(samples[m.key]))
                       for m in MEASUREMENTS if m.key in samples)


def _write_twice(driver: StorageDriver, container_id: str, layers: Sequence[Path],
                 facts: ImageFacts) -> tuple[int, int]:
    """Nanoseconds of the first and of the second write into the container's largest file."""
    from pydock.core.runtime.mounted import in_container_root

    reply = in_container_root(str(driver.rootfs_dir(container_id)),
                              driver.mounts(container_id, layers),
                              functools.partial(_write_task, facts.write_target))
    facts.write_target, facts.write_target_size = reply["path"], reply["size"]
    return reply["first"], reply["second"]


def _write_task(target: str, rootfs: str) -> dict[str, Any]:
    """In the container's mount namespace, with its root at ``rootfs``: find the file to
    write unless ``target`` names it, then time the two writes."""
    path = target or _largest_file(rootfs)
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        probe = open_in_root(root_fd, path, os.O_PATH | os.O_NOFOLLOW)
        size = os.fstat(probe).st_size
        os.close(probe)
        first = _timed_write(root_fd, path, 0)
        second = _timed_write(root_fd, path, size // 2 // len(_BLOCK) * len(_BLOCK))
    finally:
        os.close(root_fd)
    return {"path": path, "size": size, "first": first, "second": second}


def _timed_write(root_fd: int, path: str, offset: int) -> int:
    # Resolved inside the root: the image's symlinks must not lead the write to the host.
    start = time.perf_counter_ns()
    fd = open_in_root(root_fd, path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        os.pwrite(fd, _BLOCK, offset)
    finally:
        os.close(fd)
    return time.perf_counter_ns() - start


def _count_files(top: Path) -> int:
    """Entries other than directories below ``top``, as os.walk's filenames count them."""
    top_fd = os.open(top, DIR_FLAGS)
    try:
        return sum(1 for entry in TreeWalk(top_fd, want_stat=False, ordered=False)
                   if not entry.is_dir)
    finally:
        os.close(top_fd)


def _largest_file(rootfs: str) -> str:
    """The largest regular file under ``rootfs`` (the first by path among equals), as an
    absolute path inside the container."""
    best_size, best_path = -1, ""
    for dirpath, _dirnames, filenames in os.walk(rootfs):
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            relative = "/" + os.path.relpath(path, rootfs)
            if stat.S_ISREG(st.st_mode) and (
                    st.st_size > best_size or (st.st_size == best_size and relative < best_path)):
                best_size, best_path = st.st_size, relative
    if not best_path:
        raise PydockError("the image has no regular file to write into")
    return best_path


def _run_cli(storage: BenchStorage, driver: str, image: Image) -> int:
    """Nanoseconds of ``pydock run --rm ... /bin/true`` in a subprocess, start to exit."""
    # --network none: what is measured is the storage, not the default bridge's set-up.
    argv = [*_pydock_command(), "--root", str(storage.containers.root), "run", "--rm",
            "--network", "none", "--storage", driver, "--image", image.id, "--name",
            storage.run_name(), "/bin/true"]
    start = time.perf_counter_ns()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        _, errors = process.communicate()
    except BaseException:
        # Interrupted: a Ctrl-C reached the run too; give it the time to remove its container.
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    elapsed = time.perf_counter_ns() - start
    if process.returncode != 0:
        last = errors.strip().splitlines()[-1:] or ["no message"]
        raise PydockError(f"pydock run --storage {driver} --image {image.id[:19]} /bin/true "
                          f"exited {process.returncode}: {last[0]}")
    return elapsed


def _pydock_command() -> list[str]:
    """The command this pydock was started as, so that ``run`` is timed as users type it."""
    script = os.path.abspath(sys.argv[0])
    if os.path.basename(script) == "pydock" and os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "pydock.core.cli.main"]


def _scale(storage: BenchStorage, driver: StorageDriver, layers: Sequence[Path], count: int,
           facts: ImageFacts, label: str, status: StatusLine) -> dict[str, list[int]] | str:
    """``count`` containers at once: their prepare times, disk and remove times summed; or,
    when the disk would run short, a note saying so."""
    before = _allocated(driver.home)
    created: list[str] = []
    prepare_total = 0
    for number in range(1, count + 1):
        free = os.statvfs(storage.top)
        if free.f_bavail * free.f_frsize < _FREE_RESERVE + facts.size:
            for container_id in created:
                storage.remove(container_id)
            return (f"{driver.name} on {facts.reference}: scale stopped at {number - 1} of "
                    f"{count} containers, to leave at least {_FREE_RESERVE >> 30} GiB free")
        status.show(f"{label}{number}/{count} containers")
        container_id, elapsed = storage.prepare(driver, layers)
        created.append(container_id)
        prepare_total += elapsed
    disk = _allocated(driver.home) - before
    status.show(f"{label}removing {count} containers", now=True)
    remove_total = sum(storage.remove(container_id) for container_id in created)
    return {"scale_prepare": [prepare_total], "scale_remove": [remove_total],
            "scale_disk": [disk]}


def _allocated(top: Path) -> int:
    return tree_usage(top).bytes if top.exists() else 0


def _host(root: Path) -> dict[str, Any]:
    # The load average when bench starts: on a machine busy with other work, every time
    # measured is longer, and whoever reads the numbers should know.
    return {"kernel": os.uname().release, "cpus": os.cpu_count(),
            "load": [round(load, 2) for load in os.getloadavg()],
            "filesystem": _filesystem_type(root)}


def _filesystem_type(path: Path) -> str:
    """The type of the filesystem holding ``path``: its longest mount point in mountinfo."""
    target = os.path.realpath(path)
    best, kind = "", "unknown"
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields, _, rest = line.partition(" - ")
            mount_point = fields.split()[4].encode().decode("unicode_escape")
            inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best):
                best, kind = mount_point, rest.split()[0]
    return kind


@contextlib.contextmanager
def _stop_signals_as_interrupt() -> Iterator[None]:
    """SIGTERM, and SIGHUP (the terminal closed), clean up as Ctrl-C does: by default they
    would end the process on the spot, leaving bench's containers for the next bench."""
    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
