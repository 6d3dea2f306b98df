"""``pydock run -v SRC:DST[:ro|rw]``: host paths bind mounted into the container, with DST
resolved inside the container's root, whatever symlinks the image holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import DRIVERS, storage_entries, write_legacy_record

from pydock.core.images.store import DEFAULT_IMAGE, ImageStore, image_config
from pydock.core.syscalls import MNT_DETACH, umount2
from pydock.core.syscalls import mount as mount_syscall
from pydock.testing.cli import Pydock, mounts_under
from pydock.testing.layers import import_layers
from pydock.testing.tar import sym

MTIME = 1_700_000_000
EROFS = "Read-only file system"


def container_dirs(root: Path) -> list[str]:
    """Everything under the containers directory, hidden work directories included."""
    containers = root / "containers"
    return os.listdir(containers) if containers.exists() else []


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A host directory holding one file, ``from-host``."""
    path = tmp_path / "vol"
    path.mkdir()
    (path / "from-host").write_text("from host\n")
    return path


def image_with_symlinks(pydock: Pydock, links: dict[str, str], name: str = "links") -> None:
    """Image ``name``: the default image plus a layer of symlinks (path in image -> target)."""
    store = ImageStore(pydock.root)

    layers = store.resolve(DEFAULT_IMAGE).diff_ids + import_layers(
        store, [[sym(path, target) for path, target in links.items()]])
    store.add_image(image_config(layers, MTIME, "test"), name)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_volume_is_shared_both_ways_on_every_driver(pydock: Pydock, volume: Path,
                                                      driver: str) -> None:
    out = pydock.ok("run", "--rm", "--storage", driver, "-v", f"{volume}:/data", "sh", "-c",
                    "cat /data/from-host && echo from container > /data/written")
    assert out == "from host\n"
    assert (volume / "written").read_text() == "from container\n"


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_destination_missing_from_the_image_is_created_inside_the_root(
        pydock: Pydock, volume: Path, image_root: Path, driver: str) -> None:
    out = pydock.ok("run", "--rm", "--storage", driver, "--volume", f"{volume}:/srv/app/data",
                    "sh", "-c", "cat /srv/app/data/from-host; stat -c %a /srv/app")
    assert out == "from host\n755\n"
    assert not (image_root / "srv").exists()


def test_a_read_only_volume_refuses_writes(pydock: Pydock, volume: Path) -> None:
    result = pydock("run", "--rm", "-v", f"{volume}:/data:ro", "sh", "-c",
                    "cat /data/from-host && touch /data/written")
    assert result.returncode != 0
    assert result.stdout == "from host\n"
    assert EROFS in result.stderr
    assert not (volume / "written").exists()


def test_submounts_of_a_volume_come_along_read_only_with_it(pydock: Pydock,
                                                             volume: Path) -> None:
    sub = volume / "sub"
    sub.mkdir()
    mount_syscall("tmpfs", str(sub), "tmpfs", 0, "size=1m")
    try:
        (sub / "inner").write_text("on a submount\n")
        assert pydock.ok("run", "--rm", "-v", f"{volume}:/data", "cat",
                         "/data/sub/inner") == "on a submount\n"
        result = pydock("run", "--rm", "-v", f"{volume}:/data:ro", "sh", "-c",
                        "cat /data/sub/inner && touch /data/sub/written")
        assert result.returncode != 0 and result.stdout == "on a submount\n"
        assert EROFS in result.stderr
        assert not (sub / "written").exists()
    finally:
        umount2(str(sub), MNT_DETACH)


def test_a_missing_source_is_created_as_a_directory(pydock: Pydock, tmp_path: Path) -> None:
    source = tmp_path / "new" / "deeper"
    pydock.ok("run", "--rm", "-v", f"{source}:/data", "sh", "-c", "echo made > /data/file")
    assert (source / "file").read_text() == "made\n"
    assert (source.stat().st_mode & 0o7777, source.parent.stat().st_mode & 0o7777) == \
        (0o755, 0o755)


def test_a_file_volume_appears_as_a_file_created_in_the_root(pydock: Pydock,
                                                             tmp_path: Path) -> None:
    source = tmp_path / "app.conf"
    source.write_text("setting=1\n")
    out = pydock.ok("run", "--rm", "-v", f"{source}:/etc/app/app.conf:rw", "sh", "-c",
                    "cat /etc/app/app.conf; echo setting=2 >> /etc/app/app.conf; "
                    "test -f /etc/app/app.conf && echo a-file")
    assert out == "setting=1\na-file\n"
    assert source.read_text() == "setting=1\nsetting=2\n"


def test_a_read_only_root_leaves_read_write_volumes_writable(pydock: Pydock,
                                                             volume: Path) -> None:
    result = pydock("run", "--rm", "--read-only", "-v", f"{volume}:/data", "sh", "-c",
                    "touch /data/written && echo volume-ok; touch /written")
    assert result.returncode != 0
    assert result.stdout == "volume-ok\n"
    assert EROFS in result.stderr
    assert (volume / "written").exists()


def test_nested_volumes_are_mounted_parent_first_whatever_the_order(pydock: Pydock,
                                                                    tmp_path: Path) -> None:
    outer, inner = tmp_path / "outer", tmp_path / "inner"
    for path in (outer, inner):
        path.mkdir()
        (path / "name").write_text(f"{path.name}\n")
    out = pydock.ok("run", "--rm", "-v", f"{inner}:/data/sub", "-v", f"{outer}:/data",
                    "cat", "/data/name", "/data/sub/name")
    assert out == "outer\ninner\n"


# Symlinks an image may plant where a volume goes: each must be resolved as if the
# container's root were "/", so the volume lands at the given path inside the root.
# "{host}" is a directory on the host; "{host_rel}" the same path without its leading "/".
ESCAPES = {
    "absolute-to-etc": ({"data": "/etc"}, "/etc"),
    "absolute-to-a-host-path": ({"data": "{host}"}, "{host}"),
    "relative-up-and-out": ({"data": "../" * 40 + "{host_rel}"}, "{host}"),
    "through-a-second-dangling-link": (
        {"data": "hop/inner", "hop": "../" * 40 + "{host_rel}"}, "{host}/inner"),
}


@pytest.mark.parametrize(("links", "inside"), ESCAPES.values(), ids=ESCAPES.keys())
def test_a_symlink_in_the_image_cannot_lead_a_volume_out_of_the_root(
        pydock: Pydock, volume: Path, tmp_path: Path, links: dict[str, str],
        inside: str) -> None:
    host = tmp_path / "host-sentinel"
    host.mkdir()
    (host / "untouched").write_text("host\n")

    def fill(template: str) -> str:
        return template.format(host=host, host_rel=str(host).lstrip("/"))

    image_with_symlinks(pydock, {path: fill(target) for path, target in links.items()})
    mounts_on_etc = mounts_under(Path("/etc"))
    out = pydock.ok("run", "--rm", "--image", "links", "-v", f"{volume}:/data", "sh", "-c",
                    f"cat /data/from-host {fill(inside)}/from-host")
    assert out == "from host\n" * 2
    assert sorted(os.listdir(host)) == ["untouched"]
    assert (host / "untouched").read_text() == "host\n"
    assert mounts_under(host) == []
    assert mounts_under(Path("/etc")) == mounts_on_etc


@pytest.mark.parametrize("target", ["/proc", "../../../sys/kernel"])
def test_a_symlink_leading_a_volume_onto_proc_or_sys_is_refused(
        pydock: Pydock, volume: Path, target: str) -> None:
    image_with_symlinks(pydock, {"kernel": target})
    message = pydock.refused("run", "--rm", "--image", "links", "-v", f"{volume}:/kernel/x",
                             "true", match=f"mounting volume {volume}:/kernel/x: it resolves to ")
    top = "/proc" if "proc" in target else "/sys"
    assert f", under {top}, which is not allowed" in message


def test_a_file_cannot_cover_a_directory_of_the_image(pydock: Pydock, tmp_path: Path) -> None:
    source = tmp_path / "file"
    source.write_text("x\n")
    assert pydock.refused("run", "--rm", "-v", f"{source}:/etc", "true") == (
        f"container setup failed: mounting volume {source}:/etc: /etc is a directory, not a file")


def test_inspect_shows_mounts_and_binds_as_docker_does(pydock: Pydock, volume: Path,
                                                       tmp_path: Path) -> None:
    specs = [f"{volume}/:/data/", f"{tmp_path}/ro:/etc/ro:ro", f"{volume}:/rw:rw"]
    pydock.ok("run", "--name", "vols", *[arg for spec in specs for arg in ("-v", spec)],
              "true")
    info = pydock.inspect("vols")
    assert info["HostConfig"]["Binds"] == specs
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts == {
        "/data": {"Type": "bind", "Source": str(volume), "Destination": "/data", "Mode": "",
                  "RW": True, "Propagation": "rprivate"},
        "/etc/ro": {"Type": "bind", "Source": f"{tmp_path}/ro", "Destination": "/etc/ro",
                    "Mode": "ro", "RW": False, "Propagation": "rprivate"},
        "/rw": {"Type": "bind", "Source": str(volume), "Destination": "/rw", "Mode": "rw",
                "RW": True, "Propagation": "rprivate"},
    }


def test_a_record_from_before_volumes_still_loads(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "old", "true")
    write_legacy_record(pydock.root / "containers" / "old" / "state.json",
                        omit=("volumes",))
    info = pydock.inspect("old")
    assert (info["Mounts"], info["HostConfig"]["Binds"]) == ([], None)


# Each bad -v, with SRC standing for a host path that must not be created.
BAD_VOLUMES = [
    ("", "invalid volume '': empty (expected SRC:DST[:ro|rw])"),
    ("/data", "expected SRC:DST[:ro|rw] (anonymous volumes are not supported)"),
    ("myvolume:/data", "named volumes are not supported: SRC 'myvolume' must be an absolute"),
    ("./rel:/data", "host paths must be absolute: SRC './rel' is relative"),
    ("rel/dir:/data", "host paths must be absolute: SRC 'rel/dir' is relative"),
    ("../up:/data", "host paths must be absolute: SRC '../up' is relative"),
    (":/data", "empty SRC"),
    ("SRC:", "empty DST"),
    ("SRC:/data:", "empty option after the last ':'"),
    ("SRC:/data:ro:z", "too many ':'"),
    ("SRC:/data:rx", "unknown option 'rx' (expected ro or rw)"),
    ("SRC:/data:ro,rw", "unknown option 'ro,rw' (expected ro or rw)"),
    ("SRC:data", "DST 'data' must be an absolute path"),
    ("SRC:/", "DST must not be / (the container's root)"),
    ("SRC:/data/..", "DST must not be / (the container's root)"),
    ("SRC:/proc", "DST /proc is under /proc"),
    ("SRC:/proc/sys/kernel", "DST /proc/sys/kernel is under /proc"),
    ("SRC:/sys/../sys/fs", "DST /sys/fs is under /sys"),
    ("SRC:/ok", "duplicate mount point /ok"),
    ("SRC:/ok/./", "duplicate mount point /ok"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_VOLUMES)
def test_a_bad_volume_is_one_line_125_and_creates_nothing(pydock: Pydock, tmp_path: Path,
                                                          spec: str, message: str) -> None:
    source, valid = tmp_path / "src", tmp_path / "valid"
    refusal = pydock.refused("run", "--name", "bad", "-v", f"{valid}:/ok",
                             "-v", spec.replace("SRC", str(source)), "true", match=message)
    assert refusal.startswith("invalid volume ")
    assert pydock.container_names() == []
    assert container_dirs(pydock.root) == []
    assert storage_entries(pydock.root) == []
    assert not source.exists() and not valid.exists()


def test_a_source_that_cannot_be_created_undoes_the_ones_that_were(pydock: Pydock,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory\n")
    made = tmp_path / "made"
    assert pydock.refused("run", "--name", "half", "--storage", "copy", "-v", f"{made}/a:/a",
                          "-v", f"{tmp_path}/file/sub:/b", "true") == (
        f"volume {tmp_path}/file/sub:/b: cannot create {tmp_path}/file/sub: Not a directory")
    assert not made.exists()
    assert pydock.container_names() == []
    assert container_dirs(pydock.root) == []
    assert storage_entries(pydock.root) == []
