"""The embedded default image, built on first use from what the host already has.

No network is needed: the image is the host's static busybox with a symlink
per applet, or, when there is no static busybox, a handful of host binaries
together with the shared libraries and the dynamic loader they need. Either
way the tree is written as one layer tar and imported through the same path
as any other image, so it is content-addressed like the rest: building it
twice on one host gives the same image id.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydock.core import storage_root
from pydock.core.errors import PydockError
from pydock.core.files import scratch_file
from pydock.core.images.blobs import BlobStore, KeptBlobs
from pydock.core.images.store import DEFAULT_IMAGE, DEFAULT_PATH, Image, ImageStore, image_config

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/sbin/busybox", "/usr/sbin/busybox")
# What the fallback image carries: enough for a shell session and for the demo and tests.
HOST_TOOLS = ("sh", "ls", "cat", "echo", "mkdir", "rm", "mv", "cp", "touch", "ln", "sleep",
              "true", "false", "env", "id", "hostname", "uname", "grep", "sed", "head", "tail",
              "wc", "stat", "readlink", "chmod", "chown", "sha256sum", "find", "kill", "ps")
_DIRS = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o555,
         "root": 0o700, "sbin": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755,
         "usr/bin": 0o755, "usr/sbin": 0o755, "var": 0o755}
_FILES = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:"
                  b"/bin/false\n",
    "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
    "etc/hosts": b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
}


def build_default_image(store: ImageStore) -> Image:
    """Build the default image into ``store`` and name it ``DEFAULT_IMAGE``."""
    busybox = find_static_busybox()
    storage_root.ensure(store.root)
    with scratch_file(store.root) as tar_file:
        if busybox is not None:
            mtime = int(os.stat(busybox).st_mtime)
            write_busybox_layer(tar_file, busybox, mtime)
            source = f"static busybox {busybox}"
        else:
            mtime = int(os.stat("/bin/sh").st_mtime)
            write_host_tools_layer(tar_file, HOST_TOOLS, mtime)
            source = "host binaries"
        tar_file.seek(0)
        diff_id = store.import_layer(tar_file)
        # The tar is kept as the layer's blob (2 MB): pushed or saved, the default image
        # keeps its id, which a regenerated tar would not give it.
        kept = KeptBlobs(BlobStore(store.root))
        tar_file.seek(0)
        kept.add_file("layer", tar_file)
    image = store.add_image(image_config([diff_id], mtime, source), DEFAULT_IMAGE)
    config = (store.configs_dir / f"{image.id.removeprefix('sha256:')}.json").read_bytes()
    kept.record(store.locked(), [(image.id, config, None, ["layer"])])
    return image


def find_static_busybox() -> Path | None:
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file() and os.access(path, os.X_OK) and elf_interpreter(path) is None:
            return path
    return None


def elf_interpreter(path: Path) -> str | None:
    """The PT_INTERP of a 64-bit little-endian ELF file, None for a static one.

    Reading the program headers directly costs nothing and needs no tool.
    """
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            raise PydockError(f"{path}: not a 64-bit little-endian ELF executable")
        phoff, = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        for index in range(phnum):
            f.seek(phoff + index * phentsize)
            p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack(
                "<IIQQQQ", f.read(40))
            if p_type == 3:  # PT_INTERP
                f.seek(p_offset)
                return f.read(p_filesz).rstrip(b"\0").decode()
    return None


def write_busybox_layer(out: Any, busybox: Path, mtime: int) -> None:
    """A layer with busybox at /bin/busybox and a symlink for every applet it lists."""
    applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_skeleton(tar, mtime)
        _add_file(tar, "bin/busybox", busybox, mtime)
        for applet in sorted(set(applets) - {"bin/busybox"}):
            _add_symlink(tar, applet, "/bin/busybox", mtime)


def write_host_tools_layer(out: Any, tools: Iterable[str], mtime: int) -> None:
    """A layer with host binaries in /bin plus the shared libraries they load."""
    binaries = [found for tool in tools if (found := shutil.which(tool, path=DEFAULT_PATH))]
    if not binaries:
        raise PydockError("cannot build the default image: no static busybox and no host "
                          "binaries found (install busybox-static)")
    libraries: set[str] = set()
    for binary in binaries:
        libraries.update(shared_libraries(Path(binary)))
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_skeleton(tar, mtime)
        for binary in binaries:
            _add_file(tar, f"bin/{Path(binary).name}", Path(os.path.realpath(binary)), mtime)
        added = set(_DIRS)
        for library in sorted(libraries):
            parts = Path(library).relative_to("/").parts
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if parent not in added:
                    added.add(parent)
                    _add_dir(tar, parent, 0o755, mtime)
            _add_file(tar, "/".join(parts), Path(os.path.realpath(library)), mtime)


def shared_libraries(binary: Path) -> list[str]:
    """Absolute paths of the loader and libraries ``binary`` needs, as the loader resolves them."""
    interpreter = elf_interpreter(binary)
    if interpreter is None:
        return []
    listing = subprocess.run([interpreter, "--list", str(binary)], capture_output=True,
                             text=True, check=True).stdout
    paths = [interpreter]
    for line in listing.splitlines():
        words = line.split()
        if "=>" in words and len(words) > words.index("=>") + 1:
            paths.append(words[words.index("=>") + 1])
        elif words and words[0].startswith("/"):
            paths.append(words[0])
    return [p for p in paths if p.startswith("/")]


def _add_skeleton(tar: tarfile.TarFile, mtime: int) -> None:
    for name, mode in _DIRS.items():
        _add_dir(tar, name, mode, mtime)
    for name, data in _FILES.items():
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, mtime
        tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, mtime
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, source: Path, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = source.stat().st_size, 0o755, mtime
    with open(source, "rb") as f:
        tar.addfile(info, f)


def _add_symlink(tar: tarfile.TarFile, name: str, target: str, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, mtime
    tar.addfile(info)

