"""Helpers for pydock's own tests that a driver author does not need (those are in
:mod:`pydock.testing`): the drivers to parametrize over, busybox root filesystems and images,
an image with a setuid-root binary, docker archives and OCI layouts built by hand, what the
hostile-input tests share (a refusal that leaves the storage root as it was, a run that works, a
layer unpacked from members built in memory), and what tests of containers' records and cleanup
share (storage listings, legacy records, image configs).

The setuid image: the host's static busybox, setuid root, reached as ``/suid/id``. busybox runs
the applet its name says, and normally gives up a setuid root it was not told to keep; the
image's ``/etc/busybox.conf`` tells it to keep it for ``id``. So ``/suid/id -u`` prints 0 when
the setuid bit took effect (the effective uid is root's) and the caller's uid when not.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pydock.core.images.store import DEFAULT_IMAGE, ImageStore
from pydock.core.layers.unpack import extract_tar
from pydock.testing.cli import (
    Pydock,
    cgroup_hierarchies,
    container_cgroups,
    mounts_under,
    processes_using,
)
from pydock.testing.conformance import BUILTIN_DRIVERS
from pydock.testing.manifest import diff_manifests, manifest
from pydock.testing.tar import Member, dir_, reg, sym, tar_bytes, tree, write_tar

DRIVERS = BUILTIN_DRIVERS
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SETUID_ID = "/suid/id"
_APPLETS = ("sh", "ls", "cat", "echo", "touch", "mkdir", "id", "hostname", "true")
_SETUID_APPLETS = ("sh", "cat", "id", "ls", "sleep", "mkfifo", "mv", "grep", "echo", "true")


def busybox_binary() -> Path:
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static must be installed (the README's setup installs it)"
    return Path(busybox)


def busybox_rootfs(dest: Path) -> Path:
    """A minimal root filesystem directory from the host's static busybox, for image tests."""
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox_binary(), dest / "bin" / "busybox")
    for applet in _APPLETS:
        (dest / "bin" / applet).symlink_to("busybox")
    return dest


def busybox_tarball(tmp_path: Path, name: str = "rootfs.tar", compress: bool = False) -> Path:
    """:func:`busybox_rootfs` as a rootfs tarball (what ``pydock image import`` takes)."""
    return write_tar(tmp_path / name, tree(busybox_rootfs(tmp_path / f"{name}.d")),
                     compress=compress)


def setuid_members() -> list[Member]:
    """A busybox root filesystem whose /suid/busybox is setuid root."""
    busybox = busybox_binary().read_bytes()
    return [
        dir_("bin"), dir_("etc"), dir_("proc", 0o555), dir_("sys", 0o555), dir_("dev"),
        dir_("tmp", 0o1777), dir_("suid"),
        reg("bin/busybox", busybox, 0o755),
        *[sym(f"bin/{applet}", "busybox") for applet in _SETUID_APPLETS],
        reg("suid/busybox", busybox, 0o4755, uid=0, gid=0),
        sym(SETUID_ID.lstrip("/"), "busybox"),
        # Read by a setuid busybox only when it is owned by root and writable by no one else.
        reg("etc/busybox.conf", b"[SUID]\nid = ssx 0.0\n", 0o600),
        reg("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                          b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
        reg("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
    ]


def import_setuid_image(pydock: Pydock, tmp_path: Path, name: str = "setuid") -> str:
    """Import the setuid image through ``pydock image import``; its name."""
    pydock.ok("image", "import", str(write_tar(tmp_path / "setuid.tar", setuid_members())), name)
    return name


def pydock_on_copy(template: Path, root: Path) -> Iterator[Pydock]:
    """The CLI on ``root``, a copy of the storage root ``template``; containers the test
    leaves behind are force-removed afterwards."""
    subprocess.run(["cp", "-a", str(template), str(root)], check=True)
    cli = Pydock(root)
    yield cli
    leftovers = cli.container_names() if (root / "containers").exists() else []
    if leftovers:
        cli("rm", "-f", *leftovers)


# -- hostile input: refusals, runs that work, layers unpacked -------------------------------


def refused_unchanged(pydock: Pydock, args: list[str], message: str) -> str:
    """``pydock ARGS`` is refused with one line holding ``message`` (:meth:`Pydock.refused`)
    and changes nothing in the storage root; the message."""
    before = manifest(pydock.root)
    refusal = pydock.refused(*args, match=message)
    assert diff_manifests(before, manifest(pydock.root)) == []
    assert mounts_under(pydock.root) == []
    return refusal


def assert_works(result: subprocess.CompletedProcess[str], stdout: str) -> None:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == stdout


def extract(entries: list[Member], dest: Path) -> str:
    """Unpack a layer of ``entries`` into ``dest`` with :func:`extract_tar`; its sha256."""
    return extract_tar(io.BytesIO(tar_bytes(entries)), dest)


# -- image archives, built by hand ----------------------------------------------------------


@dataclass
class Layer:
    tar: bytes  # uncompressed
    blob: bytes  # as stored: the tar, or gzip of it

    @property
    def diff_id(self) -> str:
        return f"sha256:{hashlib.sha256(self.tar).hexdigest()}"

    @property
    def digest(self) -> str:
        return f"sha256:{hashlib.sha256(self.blob).hexdigest()}"


def make_layer(directory: Path, compress: bool) -> Layer:
    """A layer of what is below ``directory`` (no entry for the root itself)."""
    # GNU format: whole-second mtimes, as pydock writes them, so round trips compare exactly.
    data = tar_bytes(tree(directory)[1:], format=tarfile.GNU_FORMAT)
    return Layer(data, gzip.compress(data, mtime=0) if compress else data)


def make_layers(tmp_path: Path, compress: tuple[bool, bool, bool]) -> list[Layer]:
    """busybox; /etc/greeting; /top.txt replacing the greeting's directory's neighbour."""
    base = busybox_rootfs(tmp_path / "l1")
    middle = tmp_path / "l2"
    (middle / "etc").mkdir(parents=True)
    (middle / "etc" / "greeting").write_text("hello from the middle\n")
    top = tmp_path / "l3"
    top.mkdir()
    (top / "top.txt").write_text("top layer\n")
    return [make_layer(tree, c) for tree, c in zip((base, middle, top), compress, strict=True)]


def make_config(layers: list[Layer]) -> bytes:
    return json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
        "config": {"Env": [f"PATH={PATH}"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }, indent=2).encode()


def docker_archive(path: Path, layers: list[Layer], tags: list[str],
                   layer_paths: list[str] | None = None, config: bytes | None = None,
                   extra: Sequence[Member] = ()) -> bytes:
    """A docker-save style archive, ``extra`` members last; returns its config bytes."""
    config = config or make_config(layers)
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    paths = layer_paths or [f"{i}{'a' * 3}/layer.tar" for i in range(len(layers))]
    write_tar(path, [
        *(reg(name, layer.blob) for layer, name in zip(layers, paths, strict=False)
          if not name.startswith(("/", ".."))),
        reg(config_name, config),
        reg("manifest.json", json.dumps(
            [{"Config": config_name, "RepoTags": tags, "Layers": paths}]).encode()),
        *extra])
    return config


def blob_writer(directory: Path) -> Callable[[bytes, str], dict[str, Any]]:
    """A function storing a blob in the OCI layout ``directory`` (its ``blobs/sha256``,
    made here) and returning the blob's descriptor."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes, media_type: str) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    return blob


def oci_layout(directory: Path, layers: list[Layer], ref_name: str | None) -> bytes:
    """An OCI image layout directory; returns its config bytes."""
    blob = blob_writer(directory)

    config = make_config(layers)
    layer_type = "application/vnd.oci.image.layer.v1.tar"
    manifest_blob = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(layer.blob, layer_type + ("+gzip" if layer.blob != layer.tar else ""))
                   for layer in layers],
    }).encode()
    descriptor = blob(manifest_blob, "application/vnd.oci.image.manifest.v1+json")
    if ref_name:
        descriptor["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2,
                                                      "manifests": [descriptor]}))
    return config


# -- storage roots, records and images -------------------------------------------------------


def write_legacy_record(state_json: Path, *, omit: tuple[str, ...] = ()) -> None:
    """Rewrite a container's record as releases before the container spec wrote it: loose
    fields in place of ``spec``, less ``omit`` (fields added by later releases)."""
    record = json.loads(state_json.read_text())
    spec = record.pop("spec")
    process = spec["process"]
    host_config = json.loads(spec["annotations"]["org.pydock.host-config"])
    namespaces = {namespace["type"] for namespace in spec["linux"]["namespaces"]}
    record.update(
        command=process["args"], env=process["env"], workdir=process["cwd"],
        hostname=spec["hostname"], network="none" if "network" in namespaces else "host",
        read_only=spec["root"]["readonly"], user=process["user"]["username"],
        tty=process["terminal"], volumes=host_config["Binds"], memory=0, nano_cpus=0,
        pids_limit=0, cap_add=host_config["CapAdd"], cap_drop=host_config["CapDrop"],
        security_opt=host_config["SecurityOpt"])
    for key in omit:
        del record[key]
    state_json.write_text(json.dumps(record))


def storage_entries(root: Path) -> list[Path]:
    """Container directories of every driver (driver-level files like locks excluded)."""
    storage = root / "storage"
    if not storage.exists():
        return []
    return [p for driver in storage.iterdir() for p in driver.iterdir()
            if p.is_dir() and p.name != "shared"]


def tag_with_config(pydock: Pydock, name: str, **run_config: Any) -> None:
    """An image with the default image's layers and the given config section."""
    store = ImageStore(pydock.root)
    config = copy.deepcopy(store.resolve(DEFAULT_IMAGE).config)
    config["config"] = run_config
    store.add_image(config, name)


NEEDS_MEMORY_CGROUP = pytest.mark.skipif("memory" not in cgroup_hierarchies(),
                                         reason="this host has no memory cgroup controller")
LIMITED = ("-m", "64m")


def storage_listing(root: Path) -> list[str]:
    """Every path under the storage root, hidden ones included, except the image store."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.relative_to(root).parts[0] not in ("images", "layers"))


def warm_up(pydock: Pydock, driver: str, options: tuple[str, ...]) -> list[str]:
    """Create what every container of this kind shares (containers/, the driver's home),
    then the listing a full cleanup must come back to."""
    pydock.ok("run", "--rm", "--storage", driver, *options, "true")
    return storage_listing(pydock.root)


def assert_cleaned(pydock: Pydock, before: list[str], ids: list[str]) -> None:
    assert storage_listing(pydock.root) == before
    assert mounts_under(pydock.root) == []
    assert processes_using(pydock.root) == []
    assert container_cgroups(pydock.root) == []


def load_layered(pydock: Pydock, tmp_path: Path, layers: list[Layer], name: str,
                 **run_config: Any) -> str:
    """Load ``layers`` (make_layers') and one more that links every busybox applet into
    /bin, as image ``name`` whose config section is the usual one (PATH, Cmd /bin/sh)
    updated with ``run_config``; returns ``name``."""
    applets = tmp_path / f"applets-{len(list(tmp_path.glob('applets-*')))}"
    (applets / "bin").mkdir(parents=True)
    listed = subprocess.run([str(busybox_binary()), "--list"], capture_output=True, text=True,
                            check=True).stdout.split()
    for applet in set(listed) - set(_APPLETS) - {"busybox"}:
        (applets / "bin" / applet).symlink_to("busybox")
    layers = [*layers, make_layer(applets, False)]
    config = json.loads(make_config(layers))
    config["config"].update(run_config)
    archive = tmp_path / f"{name.replace(':', '_').replace('/', '_')}.tar"
    docker_archive(archive, layers, [name], config=json.dumps(config).encode())
    pydock.ok("image", "load", "-i", str(archive))
    return name


@contextlib.contextmanager
def private_podman() -> Iterator[list[str]]:
    """podman's command line on a store of its own, removed after. Not under tmp_path:
    podman refuses a runroot longer than 50 characters. Its blob-info cache, which it writes
    under /var/lib/containers whatever --root says, is a directory of ours in a mount
    namespace of its own."""
    home = Path(tempfile.mkdtemp(prefix="pdpm-", dir="/tmp"))
    (home / "cache").mkdir()
    base = ["podman", "--root", str(home / "root"), "--runroot", str(home / "run"),
            "--tmpdir", str(home / "tmp"), "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    cache = Path("/var/lib/containers/cache")
    command = base if not cache.is_dir() else [
        "unshare", "--mount", "--propagation", "private", "sh", "-c",
        'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh", str(home / "cache"),
        str(cache), *base]
    try:
        yield command
    finally:
        subprocess.run([*command, "system", "reset", "--force"], capture_output=True,
                       timeout=120)
        assert mounts_under(home) == []
        shutil.rmtree(home)
