"""compare.py's tools: pydock, runc and podman, each confined to the workspace.

Each class knows how to give its tool an image (an import, an OCI bundle), the command line
of one timed run, and how to remove every container it left, for the clean-up.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
from pathlib import Path

from compare_commands import run, same_every_run
from compare_figures import PODMAN_OVERLAY, PODMAN_VFS
from compare_trees import Tree

# Where podman, as root, caches which blobs it has seen, whatever its --root.
BLOB_INFO_CACHE = Path("/var/lib/containers/cache")


class Pydock:
    """The pydock under test, with its own storage root in the workspace."""

    def __init__(self, executable: str, root: Path) -> None:
        self.executable, self.root = executable, root

    def argv(self, *args: str) -> list[str]:
        return [self.executable, "--root", str(self.root), *args]

    def use_private_bridge(self, bridge: str, table: str, subnet: str) -> None:
        """The root's bridge network gets names and a subnet of its own (never a real
        pydock's pydock0), and stays off by default: the other series run on
        ``--network none``, as runc and podman do."""
        (self.root / "network").mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.root / "network" / "config.json").write_text(json.dumps(
            {"default": "none", "bridge": bridge, "table": table, "subnet": subnet}))

    def prune(self) -> None:
        """prune: with no container left, also the bridge and its nftables table."""
        if self.root.exists():
            run(self.argv("prune"))

    def import_image(self, tree: Tree) -> str:
        reference = f"bench/{tree.name}"
        run(self.argv("image", "import", str(tree.tar), reference))
        return reference

    def remove_containers(self) -> None:
        """rm -f every container of our root (those an interrupted run left behind)."""
        if not self.root.exists():
            return
        listed = json.loads(run(self.argv("ps", "-a", "--format", "json")) or "[]")
        for container in listed:
            run(self.argv("rm", "-f", container["Names"]))


class Runc:
    """runc with its state directory in the workspace."""

    def __init__(self, executable: str, state: Path) -> None:
        self.executable, self.state = executable, state

    def argv(self, *args: str) -> list[str]:
        return [self.executable, "--root", str(self.state), *args]

    def command(self, tree: Tree, bundle: Path,
                args: tuple[str, ...] = ("/bin/true",)) -> Callable[[int], list[str]]:
        """Make ``bundle`` for ``tree`` and ``args``; the command of run i (each run its
        own id)."""
        self.make_bundle(tree, bundle, args)
        return lambda i: self.argv("run", "--bundle", str(bundle),
                                   f"bench-{bundle.name}-{i}")

    def make_bundle(self, tree: Tree, bundle: Path, args: tuple[str, ...]) -> None:
        """An OCI bundle from ``runc spec`` that runs ``args`` in ``tree``.

        Changed from the spec's defaults: no terminal (nothing is attached), the command,
        and the root: the tree itself, by absolute path, writable as pydock's and podman's
        container roots are.
        """
        bundle.mkdir()
        run([self.executable, "spec", "--bundle", str(bundle)])
        config_path = bundle / "config.json"
        config = json.loads(config_path.read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = list(args)
        config["root"] = {"path": str(tree.directory), "readonly": False}
        config_path.write_text(json.dumps(config, indent=2))

    def delete_containers(self) -> None:
        """delete -f every container in our state directory (left by an interrupted run)."""
        if not self.state.exists():
            return
        for container_id in run(self.argv("list", "--quiet")).split():
            run(self.argv("delete", "--force", container_id))


class Podman:
    """One podman store (one storage driver), isolated in the workspace.

    Why each flag (benchmarks/README.md says more):

    - ``--root``, ``--runroot``, ``--tmpdir``: storage, run state, libpod's own state
      (its "alive" marker, exit files, event log) all in the workspace, so the host's
      podman store is never touched and removing the directory removes everything.
    - ``--storage-driver``: overlay or vfs, the two drivers compared with pydock's.
    - ``--cgroup-manager cgroupfs``: podman's default, systemd, needs systemd as init.
    - ``--runtime runc`` (when runc is installed): podman's default runtime here, crun
      1.8, refuses to start any container on a hybrid cgroup v1/v2 host ("cgroups in
      hybrid mode not supported"), even with ``--cgroups disabled``. With runc, podman's
      figure is runc's plus podman's own work, which is what we want to see anyway.
    - ``--network none``: no network set-up to measure, as for pydock and runc.
    - ``podman import`` alone runs in a mount namespace of its own, where the host's
      blob-info cache is hidden behind a workspace directory (see hiding_blob_info_cache).
    - ``--ulimit nofile=N:N --ulimit nproc=M:M``: podman asks the runtime for 1048576
      open files and processes by default, which fails with EPERM where root lacks
      CAP_SYS_RESOURCE and its hard limits are lower. N is our own hard limit; M is also
      capped at kernel.pid_max, the most that podman itself keeps (seen: 32768).
    """

    def __init__(self, executable: str, driver: str, home: Path, runtime: str | None) -> None:
        self.driver = driver
        self.home = home
        self.globals = [executable, "--root", str(home / "root"), "--runroot",
                        str(home / "run"), "--tmpdir", str(home / "tmp"), "--storage-driver",
                        driver, "--cgroup-manager", "cgroupfs"]
        if runtime is not None:
            self.globals += ["--runtime", runtime]

    def argv(self, *args: str) -> list[str]:
        return [*self.globals, *args]

    @property
    def label(self) -> str:
        return PODMAN_OVERLAY if self.driver == "overlay" else PODMAN_VFS

    def command(self, tree: Tree) -> Callable[[int], list[str]]:
        """Import ``tree`` into this store; the command of every run."""
        reference = f"localhost/bench-{tree.name}:latest"
        run(self.hiding_blob_info_cache(self.argv("import", "--quiet", str(tree.tar),
                                                  reference)))
        return same_every_run(self.run_argv(reference))

    def hiding_blob_info_cache(self, argv: list[str]) -> list[str]:
        """``argv`` run with a workspace directory mounted over the host's blob-info cache.

        An import writes root's blob-info cache, /var/lib/containers/cache, wherever the
        store is, and podman has no flag to move it; so the import runs in a mount
        namespace of its own where that directory is one of ours. (A run does not touch
        the cache, so the timed commands need no such namespace.)
        """
        if not BLOB_INFO_CACHE.is_dir():
            return argv
        ours = self.home / "blob-info-cache"
        ours.mkdir(parents=True, exist_ok=True)
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh", str(ours),
                str(BLOB_INFO_CACHE), *argv]

    def run_argv(self, image: str) -> list[str]:
        return self.argv("run", "--rm", "--network", "none", *podman_ulimits(), image,
                         "/bin/true")

    def default_network_argv(self, image: str) -> list[str]:
        """A run on podman's default network: netavark's bridge (podman0, 10.88.0.0/16)
        with its firewall rules, set up and torn down for the run."""
        return self.argv("run", "--rm", *podman_ulimits(), image, "/bin/true")

    def remove_containers(self) -> None:
        """rm -f all containers: unmounts their roots and frees their locks, which live in
        shared memory that every podman store on the host shares."""
        if (self.home / "root").exists():
            run(self.argv("rm", "--all", "--force"))


def podman_ulimits() -> list[str]:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nproc = pid_max if nproc == resource.RLIM_INFINITY else min(nproc, pid_max)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]
