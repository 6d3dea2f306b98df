#!/usr/bin/env python3
"""What pydock, podman and docker do with the same archive bombs, side by side.

Run as root from a checkout, with the venv's python (the bombs come from
``pydock.testing.bombs``, the generators ``tests/test_archive_bombs.py`` uses)::

    sudo .venv/bin/python benchmarks/compare_bombs.py --pydock .venv/bin/pydock

Each tool gets each bomb in a store of its own on a fresh tmpfs of ``--store`` MiB (its
temporary files too: podman's ``TMPDIR``, dockerd's data root), so that a bomb written out
fills that tmpfs and nothing else. A layer bomb goes to ``import`` (``pydock image import``,
``podman import``, ``docker import``), an archive bomb to ``load -i``. Per tool and bomb the
table shows the outcome (ok, or the last line of the error), the peak memory of the process
that did the work (for docker, the daemon's, its peak reset through ``clear_refs`` first),
the most the tmpfs held during the command and what it still holds after it.

docker is measured when ``dockerd`` is installed (Debian's ``docker.io``): the script starts
a private daemon with no network set-up (``--bridge=none --iptables=false``) on a socket in
its workspace, and stops it after each bomb. Everything lives in one temporary directory,
unmounted and removed on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydock.testing import bombs

MiB = bombs.MiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class Bomb:
    name: str
    command: str  # "import" (a layer tarball) or "load" (an image archive)
    build: Callable[[Path, int], Path]  # (directory, store bytes) -> the bomb's file


BOMBS = (
    Bomb("1 GiB PAX header", "import",
         lambda d, _: bombs.extended_header_bomb(d / "pax.tar.gz", GiB)),
    Bomb("1,000,001 members", "import",
         lambda d, _: bombs.many_members_bomb(d / "members.tar.gz", 1_000_001)),
    Bomb("4 sparse files of 3/4 the store", "import",
         lambda d, store: bombs.sparse_bomb(d / "sparse.tar", store * 3 // 4, 4)),
    Bomb("zeros after the end (2x the store)", "import",
         lambda d, store: bombs.trailing_zeros_bomb(d / "trailing.tar.gz", 2 * store)),
    Bomb("gzip'd image archive of zeros (2x the store)", "load",
         lambda d, store: bombs.gzip_file(d / "outer.tar.gz", 2 * store)),
    Bomb("gzip'd image archive, a member of 2x the store", "load",
         lambda d, store: bombs.outer_member_bomb(d / "member.tar.gz", 2 * store)),
    Bomb("layer at ratio 1000 (1/2 the store)", "load",
         lambda d, store: bombs.ratio_bomb(d / "ratio.tar", store // 2)),
)


@dataclass
class Outcome:
    result: str
    seconds: float
    peak_rss: int
    peak_disk: int
    left: int


class Tool:
    """A tool whose store lives under ``home`` (a fresh tmpfs), for one bomb."""

    name = ""

    def __init__(self, home: Path) -> None:
        self.home = home

    @contextlib.contextmanager
    def started(self) -> Iterator[None]:
        yield

    def argv(self, command: str, bomb: Path) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def worker_pid(self) -> int | None:
        """The process whose memory counts, when it is not the command itself."""
        return None


class PydockTool(Tool):
    name = "pydock"
    executable = "pydock"

    def argv(self, command: str, bomb: Path) -> list[str]:
        store = ["image", "import", str(bomb), "bomb"] if command == "import" else \
            ["image", "load", "-i", str(bomb)]
        return [self.executable, "--root", str(self.home / "root"), *store]


class PodmanTool(Tool):
    name = "podman"

    def argv(self, command: str, bomb: Path) -> list[str]:
        store = ["import", str(bomb), "bomb"] if command == "import" else \
            ["load", "-i", str(bomb)]
        return ["podman", "--root", str(self.home / "root"), "--runroot",
                str(self.home / "run"), "--storage-driver", "overlay", *store]

    def env(self) -> dict[str, str]:
        (self.home / "tmp").mkdir(exist_ok=True)
        return {**os.environ, "TMPDIR": str(self.home / "tmp")}


class DockerTool(Tool):
    name = "docker"

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        # The daemon's sockets and pid file live outside the tmpfs, whose use is measured.
        self.run_dir = Path(tempfile.mkdtemp(prefix="dockerd-"))
        self.socket = self.run_dir / "docker.sock"
        self.daemon: subprocess.Popen[bytes] | None = None

    @contextlib.contextmanager
    def started(self) -> Iterator[None]:
        self.daemon = subprocess.Popen(
            ["dockerd", "--data-root", str(self.home / "docker"), "--exec-root",
             str(self.run_dir / "exec"), "--pidfile", str(self.run_dir / "pid"), "-H",
             f"unix://{self.socket}", "--bridge=none", "--iptables=false",
             "--ip6tables=false", "--ip-masq=false"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while subprocess.run(["docker", "-H", f"unix://{self.socket}", "info"],
                                 capture_output=True).returncode != 0:
                if time.monotonic() > deadline or self.daemon.poll() is not None:
                    raise RuntimeError("dockerd did not start")
                time.sleep(0.2)
            yield
        finally:
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(60)
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def argv(self, command: str, bomb: Path) -> list[str]:
        store = ["import", str(bomb), "bomb"] if command == "import" else \
            ["load", "-i", str(bomb)]
        return ["docker", "-H", f"unix://{self.socket}", *store]

    def worker_pid(self) -> int | None:
        assert self.daemon is not None
        return self.daemon.pid


def used(path: Path) -> int:
    fs = os.statvfs(path)
    return (fs.f_blocks - fs.f_bfree) * fs.f_frsize


def peak_rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def attempt(tool: Tool, bomb: Bomb, file: Path, timeout: float) -> Outcome:
    before = used(tool.home)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], used(tool.home))

    worker = tool.worker_pid()
    if worker is not None:
        Path(f"/proc/{worker}/clear_refs").write_text("5")  # resets the peak RSS
    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    process = subprocess.Popen(tool.argv(bomb.command, file), env=tool.env(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    pipe = process.stderr
    assert pipe is not None
    stderr = [b""]
    reader = threading.Thread(target=lambda: stderr.__setitem__(0, pipe.read()))
    reader.start()
    # wait4, not Popen.wait: its rusage is the command's own (and its reaped children's).
    _, status, usage = os.wait4(process.pid, 0)
    timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    reader.join()
    done.set()
    sampler.join()
    if timed_out.is_set():
        result = f"still running after {timeout:.0f} s"
    else:
        result = "ok" if process.returncode == 0 else last_line(stderr[0])
    rss = peak_rss_of(worker) if worker is not None else usage.ru_maxrss * 1024
    return Outcome(result, seconds, rss, max(peak[0], used(tool.home)) - before,
                   used(tool.home) - before)


def last_line(stderr: bytes) -> str:
    """The error's last line, its middle cut out when it is long (the whole goes to stderr):
    podman's and docker's put what went wrong at the end."""
    lines = stderr.decode(errors="replace").strip().splitlines()
    if not lines:
        return "failed, saying nothing"
    # podman load lists what each format it tried said; the archive is a docker archive.
    line = next((line for line in lines if "docker-archive:" in line), lines[-1])
    print(line, file=sys.stderr)
    line = line.replace("|", "/")
    return line if len(line) <= 120 else f"{line[:40]} ... {line[-75:]}"


@contextlib.contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "bombs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        # podman's overlay driver leaves a mount of its own under its root.
        subprocess.run(["umount", "--recursive", str(path)], check=True)
        path.rmdir()


def megabytes(size: int) -> str:
    return f"{size / MiB:,.0f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pydock", default="pydock", help="the pydock to run")
    parser.add_argument("--store", type=int, default=1024, help="MiB of tmpfs per attempt")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per attempt")
    parser.add_argument("--bomb", action="append", help="only the bombs whose names hold this")
    parser.add_argument("--tool", action="append", choices=["pydock", "podman", "docker"],
                        help="only these tools (default: all there are)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: every tool here needs it")
    PydockTool.executable = args.pydock
    tools: list[type[Tool]] = [PydockTool, PodmanTool]
    if shutil.which("dockerd"):
        tools.append(DockerTool)
    tools = [tool for tool in tools if not args.tool or tool.name in args.tool]
    chosen = [b for b in BOMBS if not args.bomb or any(s in b.name for s in args.bomb)]
    store = args.store * MiB
    print("| bomb | tool | outcome | seconds | peak memory | peak disk | disk after |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="bombs-", dir="/var/tmp") as work:
        for bomb in chosen:
            file = bomb.build(Path(work), store)
            print(f"{bomb.name}: {file.stat().st_size:,} bytes", file=sys.stderr)
            for tool_class in tools:
                with tmpfs(Path(work) / tool_class.name, store) as home:
                    tool = tool_class(home)
                    with tool.started():
                        outcome = attempt(tool, bomb, file, args.timeout)
                print(f"| {bomb.name} | {tool.name} | {outcome.result} | "
                      f"{outcome.seconds:.1f} | {megabytes(outcome.peak_rss)} | "
                      f"{megabytes(outcome.peak_disk)} | {megabytes(outcome.left)} |",
                      flush=True)
            file.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
