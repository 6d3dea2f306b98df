"""``pydock cp`` both ways, running and stopped, resolved inside the container's root:
a symlink or ``..`` in the container never reaches a host path (CVE-2018-15664's class)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pydock.testing.cli import Pydock

SETUP = ("mkdir -p /data/sub && echo hello > /data/f && chmod 640 /data/f && "
         "echo deep > /data/sub/g && ln -s f /data/link && chown 1234:5678 /data/f")


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_copy_out_and_in(pydock: Pydock, image: tuple[str, ...], tmp_path: Path,
                         running: bool) -> None:
    tail = "sleep 600" if running else "true"
    pydock.ok("run", "-d" if running else "-i", "--name", "box", *image, "sh", "-c",
              f"{SETUP}; {tail}")
    out = tmp_path / "out"
    out.mkdir()
    pydock.ok("cp", "box:/data", str(out))
    assert (out / "data" / "f").read_text() == "hello\n"
    assert stat.S_IMODE((out / "data" / "f").stat().st_mode) == 0o640
    assert (out / "data" / "f").stat().st_uid == os.geteuid()  # the invoking user's
    assert os.readlink(out / "data" / "link") == "f"  # a symlink stays one
    assert (out / "data" / "sub" / "g").read_text() == "deep\n"
    # -a keeps the container's owners; a file to a new name; a directory's contents.
    pydock.ok("cp", "-a", "box:/data/f", str(out / "renamed"))
    assert ((out / "renamed").stat().st_uid, (out / "renamed").stat().st_gid) == (1234, 5678)
    (out / "contents").mkdir()
    pydock.ok("cp", "box:/data/sub/.", str(out / "contents"))
    assert os.listdir(out / "contents") == ["g"]
    # Inwards: into a directory, onto a new name, a whole tree.
    source = tmp_path / "in"
    (source / "nested").mkdir(parents=True)
    (source / "nested" / "n").write_text("nested\n")
    (source / "x").write_text("from host\n")
    (source / "x").chmod(0o751)
    os.chown(source / "x", 4321, 4321)
    pydock.ok("cp", str(source / "x"), "box:/data/")
    pydock.ok("cp", str(source / "x"), "box:/data/y")
    pydock.ok("cp", str(source), "box:/tree")
    check = ("stat -c '%a %u:%g' /data/x /data/y; cat /data/x /tree/nested/n")
    expected = "751 0:0\n751 0:0\nfrom host\nnested\n"
    if running:
        assert pydock.ok("exec", "box", "sh", "-c", check) == expected
    else:  # read back with -a: what the container's root now holds, owners included
        back = tmp_path / "back"
        back.mkdir()
        for path in ("/data/x", "/data/y", "/tree/nested/n"):
            pydock.ok("cp", "-a", f"box:{path}", str(back / path.replace("/", "_")))
        found = [back / "_data_x", back / "_data_y"]
        assert [f"{stat.S_IMODE(p.stat().st_mode):o} {p.stat().st_uid}:{p.stat().st_gid}"
                for p in found] == ["751 0:0", "751 0:0"]
        assert (back / "_data_x").read_text() + (back / "_tree_nested_n").read_text() == (
            "from host\nnested\n")
    pydock.ok("rm", "-f", "box")


def test_symlinks_and_dotdot_in_the_container_never_reach_the_host(
        pydock: Pydock, image: tuple[str, ...], tmp_path: Path) -> None:
    host_dir = tmp_path / "host-target"
    host_dir.mkdir()
    (host_dir / "secret").write_text("host secret\n")
    before = sorted(os.listdir(host_dir))
    pydock.ok("run", "-d", "--name", "box", *image, "sh", "-c",
              f"ln -s {host_dir} /evil; ln -s ../../../../../{host_dir} /climb; "
              f"ln -s {host_dir}/secret /evilfile; sleep 600")
    payload = tmp_path / "payload"
    payload.write_text("payload\n")
    for destination in ("box:/evil", "box:/evil/", "box:/climb/", f"box:/../../..{host_dir}",
                        "box:/evilfile"):
        result = pydock("cp", str(payload), destination)
        assert "Traceback" not in result.stderr
    assert sorted(os.listdir(host_dir)) == before
    assert (host_dir / "secret").read_text() == "host secret\n"
    # Outwards, the link leads to the container's own path, where nothing is.
    out = tmp_path / "out"
    pydock.refused("cp", "box:/evil/secret", str(out), match="in the container")
    pydock.refused("cp", f"box:/../../../..{host_dir}/secret", str(out),
                   match="in the container")
    assert not out.exists()
    # What did land, landed inside the container.
    listing = pydock.ok("exec", "box", "sh", "-c", f"ls {host_dir} /evilfile; cat /evilfile")
    assert "payload" in listing
    pydock.ok("rm", "-f", "box")


def test_cp_refusals(pydock: Pydock, tmp_path: Path) -> None:
    pydock.ok("run", "-d", "--name", "box", "sh", "-c", "mknod /node c 1 3; sleep 600")
    file = tmp_path / "f"
    file.write_text("x")
    for args, message in [
        (("box:/etc/passwd", "other:/x"), "copying between containers"),
        ((str(file), str(tmp_path / "g")), "must be CONTAINER:PATH"),
        (("nosuch:/x", str(tmp_path)), "no such container"),
        (("../box:/x", str(tmp_path)), "must be CONTAINER:PATH"),
        (("box:/nonexistent", str(tmp_path)), "No such file or directory in the container"),
        ((str(file), "box:/nonexistent/dir/f"), "No such file or directory in the container"),
        (("box:/etc/passwd", str(tmp_path / "missing") + "/"), "does not exist"),
        ((str(file), "box:/proc/sys/kernel/x"), "/proc or /sys"),
        (("box:/sys/kernel", str(tmp_path)), "/proc or /sys"),
        (("box:/node", str(tmp_path)), "device node"),
        ((str(tmp_path / "none"), "box:/x"), "No such file or directory"),
        (("box:", str(tmp_path)), "no path after"),
    ]:
        pydock.refused("cp", *args, match=message)
    assert not (tmp_path / "node").exists()
    pydock.ok("rm", "-f", "box")


def test_cp_by_id_prefix(pydock: Pydock, tmp_path: Path) -> None:
    container_id = pydock.ok("run", "-d", "--name", "box", "sleep", "600").strip()
    pydock.ok("cp", f"{container_id[:8]}:/etc/passwd", str(tmp_path / "passwd"))
    assert "root" in (tmp_path / "passwd").read_text()
    pydock.ok("rm", "-f", "box")
