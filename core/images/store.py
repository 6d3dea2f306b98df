"""The image store: content-addressed layers and OCI image configs under ``<root>``.

Layout::

    layers/<sha256 hex>/diff/     one extracted layer, in the kernel's overlay format;
                                  named by the sha256 of its uncompressed tar (OCI diff_id),
                                  so identical layers are stored once and shared
    images/configs/<hex>.json     an OCI image config, byte for byte as it came (so the image
                                  id, its sha256, is the one docker and podman show); one
                                  file per image, named or not
    images/repositories.json      {"name:tag": "sha256:<image id>"}, and
                                  {"name@sha256:<manifest digest>": ...} for pulled images
    blobs/, images/manifests/     registry blobs as they came (pydock.core.images.blobs)

Layers and configs are immutable once renamed into place; configs are added and removed,
and ``repositories.json`` changes, only under ``images/lock`` (the latter written atomically).
An image that loses its last name to another image stays, addressable by id, as in docker.

Images and the containers made from them: ``image rm`` holds ``images/lock`` exclusively
from asking whether a container uses the image until its layers are gone, and readers take
it shared (:meth:`ImageStore.resolve`, :meth:`ImageStore.confirm`). ``run`` resolves its
image, creates the container's record, and only then confirms, under the shared lock, that
the image still exists, before it touches a layer. Either the confirmation comes first, and
``image rm`` then finds the record and refuses; or ``image rm`` comes first, and ``run``
finds the image gone and fails as if it had never been there, leaving nothing. A container
whose layers are gone cannot come of it, and ``run`` holds no lock while it creates the
record or prepares storage (a copy of a large image), so imports are never held up by it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NamedTuple

from pydock.core import failpoints, storage_root
from pydock.core.errors import PydockError
from pydock.core.files import (
    DIR_FLAGS,
    TreeWalk,
    flocked,
    hidden_name,
    remove_tree,
    sha256_hex,
    write_bytes_atomic,
    write_json_atomic,
)
from pydock.core.ids import HEX64, is_digest
from pydock.core.leftovers import sweep

DEFAULT_IMAGE = "pydock/default:latest"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's reference grammar: [host[:port]/]path[:tag][@digest], path components
# lowercase. As in docker, a first component is a host only if it has a '.' or a port or
# is "localhost"; otherwise "NOT/valid" would pass as host "NOT".
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+)(?::[0-9]+)?|[a-zA-Z0-9-]+:[0-9]+"
# Patterns here and below are compiled (and cached) by re on first use, not on the way to
# every `pydock run`.
_REFERENCE = (rf"(?:(?P<host>{_HOST})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
              r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?")
_IMAGE_ID = r"(?:sha256:)?([0-9a-f]{12,64})"
DOCKER_HUB = "docker.io"
# What docker takes for Docker Hub, besides its own name.
_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io")


class NoSuchImage(PydockError):
    """No image has that name or id in the store (``run`` may then pull it)."""


class Reference(NamedTuple):
    """An image reference as docker reads it: ``debian`` is
    ``docker.io/library/debian:latest``, ``user/x`` is ``docker.io/user/x:latest``,
    ``localhost:5000/x`` and ``host.name/x`` name their registry. A digest, when given,
    is what counts; the tag then defaults to nothing."""

    host: str  # the registry: "docker.io", "localhost:5000", "quay.io"
    path: str  # the repository on it: "library/debian"
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        """Docker's familiar name: without ``docker.io/`` and ``library/``."""
        if self.host != DOCKER_HUB:
            return f"{self.host}/{self.path}"
        return self.path.removeprefix("library/") if self.path.count("/") == 1 else self.path

    @property
    def full_repository(self) -> str:
        return f"{self.host}/{self.path}"

    @property
    def familiar(self) -> str:
        """What the store keys names by and ``image ls`` shows: ``debian:latest``,
        ``localhost:5000/x:1``, ``debian@sha256:...``."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"

    def __str__(self) -> str:
        return f"{self.full_repository}{f'@{self.digest}' if self.digest else f':{self.tag}'}"


def parse_reference(ref: str) -> Reference:
    """``ref`` read as docker reads it (see :class:`Reference`); PydockError if malformed."""
    match = re.fullmatch(_REFERENCE, ref)
    if not match or len(f"{match['host'] or ''}/{match['path']}") > 256:
        raise PydockError(f"invalid image reference {ref!r}: expected [HOST[:PORT]/]NAME[:TAG]"
                          "[@sha256:DIGEST] (lowercase name, tag of letters, digits, '_', "
                          "'.', '-')")
    host = match["host"] or DOCKER_HUB
    if host in _HUB_ALIASES:
        host = DOCKER_HUB
    path = match["path"]
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    digest = match["digest"]
    return Reference(host, path, match["tag"] or (None if digest else "latest"), digest)


def normalize_reference(ref: str) -> str:
    """The name ``ref`` stands for, as the store keys it: ``name:tag`` (tag defaulting to
    ``latest``) or ``name@sha256:...``, in docker's familiar form (``debian:latest`` for
    ``docker.io/library/debian``); PydockError if malformed."""
    return parse_reference(ref).familiar


class Image(NamedTuple):
    """One image: its id (sha256 of the config), the names pointing at it (``name:tag``),
    its config, and the ``name@sha256:<manifest digest>`` it was pulled or pushed as."""

    id: str
    names: tuple[str, ...]
    config: dict[str, Any]
    digests: tuple[str, ...] = ()

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config["rootfs"]["diff_ids"])

    @property
    def run_config(self) -> dict[str, Any]:
        """The image's ``config`` section (Env, Cmd, Entrypoint, WorkingDir, User ...)."""
        config = dict(self.config.get("config") or {})
        for key in ("Cmd", "Entrypoint"):
            # Docker's StrSlice: a single string is a list of one, never a list of letters.
            if isinstance(config.get(key), str):
                config[key] = [config[key]]
        return config


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.layers_dir = root / "layers"
        self.images_dir = root / "images"
        self.configs_dir = self.images_dir / "configs"
        self.repositories = self.images_dir / "repositories.json"

    # -- reading ---------------------------------------------------------

    def layer_path(self, diff_id: str) -> Path:
        return self.layers_dir / diff_id.removeprefix("sha256:") / "diff"

    def layer_paths(self, diff_ids: list[str]) -> list[Path]:
        return [self.layer_path(d) for d in diff_ids]

    def all_images(self) -> list[Image]:
        """Every image, named ones first (by name), then the unnamed ones (by id)."""
        repositories = self._read_repositories()
        by_id: dict[str, tuple[str, ...]] = {image_id: () for image_id in self._image_ids()}
        for image_id in repositories.values():
            by_id[image_id] = self._names_of(image_id, repositories)
        return [self._load(image_id, names, repositories) for image_id, names in
                sorted(by_id.items(), key=lambda item: (not item[1], item[1], item[0]))]

    def resolve(self, ref: str) -> Image:
        """The image named ``ref`` (``name[:tag]``) or with that id or unique id prefix."""
        with self._locked(shared=True):  # not half-way through an `image rm`
            repositories = self._read_repositories()
            image_id, _name = self._lookup(ref, repositories)
            return self._load(image_id, self._names_of(image_id, repositories), repositories)

    def confirm(self, image_id: str, ref: str) -> None:
        """PydockError ``no such image`` unless image ``image_id`` (resolved from ``ref``)
        is still in the store: for ``run``, once its container's record names the image
        (see the module's docstring)."""
        with self._locked(shared=True):
            if not (self.configs_dir / f"{image_id.removeprefix('sha256:')}.json").exists():
                # Worded as resolve() words it: the image is gone as if never there.
                raise PydockError(f"no such image: {normalize_reference(ref)}")

    def size(self, image: Image) -> int:
        """Apparent size of the image's layers, as recorded when each was extracted."""
        total = 0
        for diff_id in image.diff_ids:
            with contextlib.suppress(FileNotFoundError, ValueError):
                total += int((self.layer_path(diff_id).parent / "size").read_text())
        return total

    # -- writing ---------------------------------------------------------

    def import_layer(self, stream: IO[bytes]) -> str:
        """Extract one uncompressed layer tar into the store; returns its diff_id.

        Extraction goes to a temporary directory that is renamed into place only
        when complete, so a rejected or interrupted archive leaves nothing behind.
        """
        from pydock.core.layers.unpack import extract_tar

        storage_root.ensure(self.root)
        tmp = self.layers_dir / hidden_name(".tmp-")
        tmp.mkdir(mode=0o700, parents=True)
        # The layer root becomes the container's "/": 0755 unless the tar's "." entry says
        # otherwise (the private 0700 belongs to the directory above it).
        (tmp / "diff").mkdir()
        os.chmod(tmp / "diff", 0o755)
        try:
            digest = extract_tar(stream, tmp / "diff")
            (tmp / "size").write_text(str(_apparent_size(tmp / "diff")))
            failpoints.reached("image.layer-extracted")
            try:
                os.rename(tmp, self.layers_dir / digest)
            except OSError:
                # Already stored (by an earlier image or a concurrent import): share it.
                if not (self.layers_dir / digest / "diff").is_dir():
                    raise
        finally:
            with contextlib.suppress(OSError):
                remove_tree(tmp)
        return f"sha256:{digest}"

    def add_image(self, config: dict[str, Any], name: str) -> Image:
        """Store an image config and point ``name`` at it (replacing what it named before)."""
        blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        [image] = self.add_raw_images([(blob, [name])])
        return image

    def add_raw_images(self, images: list[tuple[bytes, list[str]]]) -> list[Image]:
        """Store configs verbatim (the id is the sha256 of these bytes) and point each of
        their names at them, all under one lock: either every image and name is added or,
        on error, none. A config may come with no names; it is then addressable by id.
        """
        blobs = [(blob, [normalize_reference(n) for n in names]) for blob, names in images]
        storage_root.ensure(self.root)
        self.configs_dir.mkdir(mode=0o700, exist_ok=True)
        with self._locked():
            for blob, _names in blobs:
                for diff_id in _diff_ids_of(blob):
                    if not self.layer_path(diff_id).is_dir():
                        raise PydockError(f"layer {diff_id} is missing from the store")
            repositories = self._read_repositories()
            ids = []
            for blob, names in blobs:
                image_id = sha256_hex(blob)
                config_path = self.configs_dir / f"{image_id}.json"
                if not config_path.exists():
                    write_bytes_atomic(config_path, blob)
                ids.append(f"sha256:{image_id}")
                repositories.update(dict.fromkeys(names, ids[-1]))
            write_json_atomic(self.repositories, repositories)
            return [self._load(i, self._names_of(i, repositories), repositories) for i in ids]

    def tag(self, source: str, target: str) -> Image:
        """Point the name ``target`` at the image ``source`` names (``image tag``)."""
        name = parse_reference(target)
        if name.digest:
            raise PydockError(f"cannot tag {target!r}: a tag, not a digest, names an image")
        with self._locked():
            repositories = self._read_repositories()
            image_id, _name = self._lookup(source, repositories)
            repositories[name.familiar] = image_id
            write_json_atomic(self.repositories, repositories)
            return self._load(image_id, self._names_of(image_id, repositories), repositories)

    def add_digest(self, image_id: str, digest_name: str) -> None:
        """Record that image ``image_id`` is ``name@sha256:...`` (its manifest's digest in
        that repository), as docker's RepoDigests, once it is pulled or pushed."""
        name = normalize_reference(digest_name)
        with self._locked():
            repositories = self._read_repositories()
            if repositories.get(name) != image_id and (
                    self.configs_dir / f"{image_id.removeprefix('sha256:')}.json").exists():
                repositories[name] = image_id
                write_json_atomic(self.repositories, repositories)

    def remove_unused_layers(self, diff_ids: list[str]) -> None:
        """Delete those of ``diff_ids`` that no image uses: the undo of a failed load."""
        with self._locked():
            used = {d for i in self._image_ids() for d in self._load(i, ()).diff_ids}
            for diff_id in set(diff_ids) - used:
                self._remove_layer(diff_id)

    def remove(self, ref: str, in_use: Callable[[Image], list[str]]) -> Image:
        """Untag ``ref`` (all names, when ``ref`` is an id); when no name is left,
        delete the config and the layers no other image shares.

        ``in_use(image)`` names the containers using the image; removal is
        refused while there are any. It is asked under the store's lock.
        """
        with self._locked():
            repositories = self._read_repositories()
            image_id, name = self._lookup(ref, repositories)
            image = self._load(image_id, self._names_of(image_id, repositories), repositories)
            users = in_use(image)
            if users:
                raise PydockError(f"image {name or image_id} is in use by container(s) "
                                  f"{', '.join(users)}: remove them first")
            for doomed in [name] if name else [*image.names, *image.digests]:
                del repositories[doomed]
            if not self._names_of(image_id, repositories) and (name is None or "@" not in name):
                # Its last tag gone, the image goes, and the digests it was pulled as with
                # it, as in docker.
                for doomed in image.digests:
                    repositories.pop(doomed, None)
            write_json_atomic(self.repositories, repositories)
            if image_id in repositories.values():
                return image
            (self.configs_dir / f"{image_id.removeprefix('sha256:')}.json").unlink(
                missing_ok=True)
            from pydock.core.images.blobs import BlobStore

            BlobStore(self.root).forget_image(image_id, set(self._image_ids()))
            shared = {d for i in self._image_ids() for d in self._load(i, ()).diff_ids}
            for diff_id in image.diff_ids:
                if diff_id not in shared:
                    self._remove_layer(diff_id)
        return image

    def sweep(self) -> list[str]:
        """Remove what crashed imports, writes and removals left in the store; what could
        not be removed, said for a warning."""
        from pydock.core.images.blobs import BlobStore

        blobs = BlobStore(self.root)
        if self.images_dir.exists():
            with self._locked():
                blobs.collect(self._image_ids())
        return [*sweep(self.layers_dir, (".tmp-", ".rm-")), *blobs.sweep(),
                *sweep(self.images_dir, (".new-",)),
                *sweep(self.configs_dir, (".new-",))]

    # -- helpers ---------------------------------------------------------

    def _remove_layer(self, diff_id: str) -> None:
        # Rename first so that a crash half-way never leaves a partial layer under its
        # digest, only a hidden directory that sweep() removes.
        layer = self.layers_dir / diff_id.removeprefix("sha256:")
        doomed = self.layers_dir / hidden_name(".rm-")
        with contextlib.suppress(FileNotFoundError):
            os.rename(layer, doomed)
            remove_tree(doomed)

    def _image_ids(self) -> list[str]:
        """Ids of all stored images: one config file each."""
        try:
            names = os.listdir(self.configs_dir)
        except FileNotFoundError:
            return []
        return sorted(f"sha256:{n.removesuffix('.json')}" for n in names
                      if re.fullmatch(rf"{HEX64}\.json", n))

    def _lookup(self, ref: str, repositories: dict[str, str]) -> tuple[str, str | None]:
        """(image id, the name ``ref`` matched or None when it matched an id)."""
        id_match = re.fullmatch(_IMAGE_ID, ref)
        if id_match:
            hits = {i for i in {*self._image_ids(), *repositories.values()}
                    if i.removeprefix("sha256:").startswith(id_match[1])}
            if len(hits) > 1:
                raise PydockError(f"image id prefix {ref!r} is ambiguous")
            if hits:
                return hits.pop(), None
        name = normalize_reference(ref)
        if name not in repositories:
            raise NoSuchImage(f"no such image: {name}")
        return repositories[name], name

    def _load(self, image_id: str, names: tuple[str, ...],
              repositories: dict[str, str] | None = None) -> Image:
        path = self.configs_dir / f"{image_id.removeprefix('sha256:')}.json"
        try:
            config = json.loads(path.read_text())
            config["rootfs"]["diff_ids"]
        except FileNotFoundError:
            raise PydockError(f"image {image_id} has no config in the store") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise PydockError(f"image {image_id}: corrupt config {path}: {exc!r}") from None
        digests = tuple(sorted(n for n, i in (repositories or {}).items()
                               if i == image_id and "@" in n))
        return Image(image_id, names, config, digests)

    def _read_repositories(self) -> dict[str, str]:
        try:
            data = json.loads(self.repositories.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise PydockError(f"corrupt image index {self.repositories}: {exc}") from None
        if not isinstance(data, dict):
            raise PydockError(f"corrupt image index {self.repositories}")
        return {_familiar(str(k)): str(v) for k, v in data.items()}

    @staticmethod
    def _names_of(image_id: str, repositories: dict[str, str]) -> tuple[str, ...]:
        """The image's tags (``name:tag``); its digests are :attr:`Image.digests`."""
        return tuple(sorted(n for n, i in repositories.items() if i == image_id and "@" not in n))

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """The store's lock, held exclusively: for what is recorded beside an image."""
        return self._locked()

    def _locked(self, shared: bool = False) -> contextlib.AbstractContextManager[None]:
        if shared and not self.images_dir.exists():
            return contextlib.nullcontext()  # no image yet: nothing to keep consistent
        storage_root.ensure(self.root)
        return flocked(self.images_dir / "lock", shared=shared)


def _familiar(name: str) -> str:
    """A stored name in today's form: one written by a pydock that kept names as given
    (``docker.io/library/debian:12``) is found as docker would name it (``debian:12``)."""
    if "." not in name and "/" not in name.partition(":")[0]:
        return name  # already familiar (the common case, on every `run`): no regex
    try:
        return normalize_reference(name)
    except PydockError:
        return name


def _diff_ids_of(blob: bytes) -> list[str]:
    try:
        diff_ids = json.loads(blob)["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PydockError(f"invalid image config: no rootfs.diff_ids ({exc!r})") from None
    # They become paths under layers/: anything but a sha256 digest could point elsewhere.
    if not isinstance(diff_ids, list) or not all(
            isinstance(d, str) and is_digest(d) for d in diff_ids):
        raise PydockError("invalid image config: rootfs.diff_ids is not a list of sha256 "
                          "digests")
    return diff_ids


def _apparent_size(top: Path) -> int:
    top_fd = os.open(top, DIR_FLAGS)
    try:
        return sum(entry.st.st_size for entry in TreeWalk(top_fd, ordered=False)
                   if entry.st and not entry.is_dir)
    finally:
        os.close(top_fd)


def image_config(diff_ids: list[str], mtime: int, source: str) -> dict[str, Any]:
    """An OCI image config for a single-layer image made by pydock (default image, import).

    ``Cmd`` is ``/bin/sh`` so that ``pydock run --image NAME`` gives a shell, as in the tutorials.
    """
    created = rfc3339(mtime)
    return {
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(),
                                                                    platform.machine()),
        "os": "linux",
        "created": created,
        "config": {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": f"pydock default image from {source}"}],
    }


def rfc3339(timestamp: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
