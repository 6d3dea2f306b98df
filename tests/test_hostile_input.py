"""Hostile input through the CLI: one line on stderr and exit status 125, or it works as in
docker; never a traceback, and a refused command leaves the storage root as it found it.

The bad-input tests of test_cli_errors, test_state, test_users, test_volumes, test_cgroups,
test_archive and test_image_transfer are not repeated here; this file adds what they miss.
Each test compares a full listing of the storage root (paths, types, modes, owners, sizes,
contents) before and after. The root has run one container on every driver first, so the
store's own directories, which pydock makes on first use and keeps (``containers/``,
``storage/<driver>/``), do not count as a change. conftest checks after every test that no
mount and no container cgroup survives.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    DRIVERS,
    Layer,
    busybox_rootfs,
    docker_archive,
    make_config,
    make_layers,
    oci_layout,
    pydock_on_copy,
)

from pydock.core.containers import spec
from pydock.core.containers.spec import RunOptions
from pydock.testing.cli import Pydock, mounts_under
from pydock.testing.manifest import diff_manifests, manifest
from pydock.testing.tar import reg, tar_bytes, tree, write_tar

# -- fixtures and checks ------------------------------------------------------------------


@pytest.fixture(scope="session")
def primed_root(template_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default image's root after one container per driver has come and gone."""
    root = tmp_path_factory.mktemp("primed") / "root"
    subprocess.run(["cp", "-a", str(template_root), str(root)], check=True)
    for driver in DRIVERS:
        Pydock(root).ok("run", "--rm", "--storage", driver, "true")
    return root


@pytest.fixture
def pydock(primed_root: Path, tmp_path: Path) -> Iterator[Pydock]:
    """conftest's fixture, on a copy of the primed root."""
    yield from pydock_on_copy(primed_root, tmp_path / "root")


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> list[Layer]:
    """Three uncompressed layers: busybox, /etc/greeting, /top.txt (test_image_transfer's)."""
    return make_layers(tmp_path_factory.mktemp("layers"), (False, False, False))


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


# -- run's flags ----------------------------------------------------------------------------
# Each refused with the root as it was. "SRC" stands for a host path that must stay absent.

LONG = "n" * 300  # longer than any file name may be (255)
# Digits to Unicode, not to the ASCII-only parsers: fullwidth 64 and Arabic-Indic 10.
WIDE_64, ARABIC_10 = "\uff16\uff14", "\u0661\u0660"

BAD_RUN_FLAGS = {
    "env-empty-key-and-value": (["-e", "="], "invalid environment variable '='"),
    "env-bad-after-good": (["-e", "A=1", "-e", "=x"], "invalid environment variable '=x'"),
    "workdir-dot": (["-w", "."], "working directory '.' must be an absolute path"),
    "workdir-climbing": (["-w", "../etc"], "working directory '../etc' must be an absolute"),
    "workdir-tilde": (["-w", "~/x"], "working directory '~/x' must be an absolute path"),
    "user-colon": (["-u", ":"], "invalid user ':'"),
    "user-no-group": (["-u", "a:"], "invalid user 'a:'"),
    "user-no-user": (["-u", ":b"], "invalid user ':b'"),
    "user-uid-2**32": (["-u", "4294967296"], "id 4294967296 is out of range"),
    "user-uid-minus-1-as-unsigned": (["-u", "4294967295"], "id 4294967295 is out of range"),
    "user-gid-2**32": (["-u", "0:4294967296"], "id 4294967296 is out of range"),
    "user-negative": (["-u", "-1"], "invalid user '-1'"),
    "user-negative-gid": (["-u", "0:-1"], "invalid user '0:-1'"),
    "user-name-too-long": (["-u", "u" * 33], "invalid user"),
    "user-unicode": (["-u", "ünï"], "invalid user 'ünï'"),
    "hostname-leading-dash": (["--hostname", "-h"], "invalid hostname '-h'"),
    "hostname-leading-dot": (["--hostname", ".h"], "invalid hostname '.h'"),
    "hostname-unicode": (["--hostname", "hôte"], "invalid hostname 'hôte'"),
    "hostname-control": (["--hostname", "a\x1bb"], "invalid hostname 'a\\x1bb'"),
    "hostname-newline": (["--hostname", "a\nb"], "invalid hostname 'a\\nb'"),
    "hostname-slash": (["--hostname", "a/b"], "invalid hostname 'a/b'"),
    "network-empty": (["--network", ""], "'' is not one of 'none', 'host'"),
    "network-container": (["--network", "container:x"], "'container:x' is not one of"),
    "network-upper-case": (["--network", "NONE"], "'NONE' is not one of"),
    "storage-path-like": (["--storage", "../overlay"], "unknown storage driver '../overlay'"),
    "storage-absolute": (["--storage", "/etc"], "unknown storage driver '/etc'"),
    "storage-upper-case": (["--storage", "Overlay"], "unknown storage driver 'Overlay'"),
    "storage-trailing-space": (["--storage", "overlay "], "unknown storage driver 'overlay '"),
    "image-empty": (["--image", ""], "invalid image reference ''"),
    "image-double-colon": (["--image", "a::b"], "invalid image reference 'a::b'"),
    "image-two-tags": (["--image", "a:b:c"], "invalid image reference 'a:b:c'"),
    "image-path-like": (["--image", "../x"], "invalid image reference '../x'"),
    "image-space": (["--image", "a b"], "invalid image reference 'a b'"),
    "image-digest": (["--image", "busybox@sha256:" + "a" * 64], "invalid image reference"),
    "image-leading-dash": (["--image=-x"], "invalid image reference '-x'"),
    "image-too-long": (["--image", "a" * 300], "invalid image reference"),
    "image-unknown-id": (["--image", "sha256:" + "0" * 64], "no such image"),
    "memory-double-unit": (["-m", "64mm"], "invalid memory size '64mm'"),
    "memory-not-ascii-digits": (["-m", f"{WIDE_64}m"], f"invalid memory size '{WIDE_64}m'"),
    "memory-exponent": (["-m", "1e9"], "invalid memory size '1e9'"),
    "memory-hex": (["-m", "0x10"], "invalid memory size '0x10'"),
    "memory-nan": (["-m", "nan"], "invalid memory size 'nan'"),
    "cpus-inf": (["--cpus", "inf"], "invalid number of CPUs 'inf'"),
    "cpus-exponent": (["--cpus", "1e0"], "invalid number of CPUs '1e0'"),
    "cpus-space": (["--cpus", " 1"], "invalid number of CPUs ' 1'"),
    "cpus-not-ascii-digit": (["--cpus", ARABIC_10[0]], f"invalid number of CPUs '{ARABIC_10[0]}'"),
    "pids-empty": (["--pids-limit", ""], "invalid --pids-limit ''"),
    "pids-not-ascii-digits": (["--pids-limit", ARABIC_10], f"invalid --pids-limit '{ARABIC_10}'"),
    "pids-space": (["--pids-limit", " 5"], "invalid --pids-limit ' 5'"),
    "pids-huge": (["--pids-limit", "9" * 30], "is more than the kernel allows"),
    "volume-upper-case-mode": (["-v", "SRC:/data:RO"], "unknown option 'RO'"),
    # Found only when SRC is created, after the container's record: undone with it.
    "volume-source-name-too-long": (["-v", f"SRC/{LONG}:/data"], "File name too long"),
}


@pytest.mark.parametrize(("args", "message"), BAD_RUN_FLAGS.values(), ids=BAD_RUN_FLAGS.keys())
def test_a_bad_run_flag_is_refused_and_leaves_the_root_as_it_was(
        pydock: Pydock, tmp_path: Path, args: list[str], message: str) -> None:
    source = tmp_path / "src"
    args = [arg.replace("SRC", str(source)) for arg in args]
    refused_unchanged(pydock, ["run", "--name", "never", *args, "true"], message)
    assert not source.exists()


# What only the container's own root can tell: refused while the container is set up. As in
# docker, the container then stays, exited, with the reason, until rm (or at once with --rm).
SETUP_FAILURES = {
    "user-not-in-the-image": (["-u", "ghost"], "unable to find user ghost"),
    "group-not-in-the-image": (["-u", "nobody:ghosts"], "unable to find group ghosts"),
    "workdir-is-a-file": (["-w", "/etc/passwd"], "/etc/passwd: File exists"),
    "workdir-under-proc": (["-w", "/proc/none"], "/proc/none: No such file or directory"),
    "workdir-closed-to-the-user": (["-u", "nobody", "-w", "/root"], "/root: Permission denied"),
    "workdir-name-too-long": (["-w", f"/{LONG}"], "File name too long"),
    "volume-destination-name-too-long": (["-v", f"SRC:/{LONG}"], "File name too long"),
}


@pytest.mark.parametrize(("args", "message"), SETUP_FAILURES.values(),
                         ids=SETUP_FAILURES.keys())
def test_what_only_the_image_refuses_fails_at_setup_and_rm_undoes_it(
        pydock: Pydock, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "src").mkdir()
    args = [arg.replace("SRC", str(tmp_path / "src")) for arg in args]
    refused_unchanged(pydock, ["run", "--rm", *args, "true"], message)
    before = manifest(pydock.root)
    refusal = pydock.refused("run", "--name", "failed", *args, "true")
    state = pydock.inspect("failed")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 125)
    assert message in state["Error"] and state["Error"] in refusal
    pydock.ok("rm", "failed")
    assert diff_manifests(before, manifest(pydock.root)) == []


def test_edge_values_docker_accepts_work(pydock: Pydock) -> None:
    run = ["run", "--rm"]
    # An empty -w or -u means "not given": the image's (here none: / and root).
    assert_works(pydock(*run, "-w", "", "-u", "", "sh", "-c", "pwd; id -u"), "/\n0\n")
    # The working directory is cleaned as docker's filepath.Clean does, never climbing
    # above "/", and nothing is made on the way to it.
    assert_works(pydock(*run, "-w", "/made/../here", "sh", "-c", "pwd; test -e /made || echo none"),
                 "/here\nnone\n")
    assert_works(pydock(*run, "-w", "/../../..", "pwd"), "/\n")
    # The largest id there is; 2**32-1 is (uid_t)-1, "no change" to the kernel.
    assert_works(pydock(*run, "-u", "4294967294:4294967294", "sh", "-c", "id -u; id -g"),
                 "4294967294\n4294967294\n")
    # Keys may hold anything but "=", the value anything at all. env, not a shell: a shell
    # passes on only the variables whose names it could use.
    given = ["a=b=c", "with space=1", f"{'K' * 1000}=long key"]
    result = pydock(*run, *[arg for item in given for arg in ("-e", item)], "env")
    assert result.returncode == 0, result.stderr
    assert set(given) <= set(result.stdout.splitlines())
    assert_works(pydock(*run, "--hostname", "h" * 64, "hostname"), "h" * 64 + "\n")


def test_a_command_name_with_a_newline_or_an_escape_is_quoted_on_one_line(
        pydock: Pydock) -> None:
    for command, shown in (("no\nsuch", "no\\nsuch"), ("no\x1b[31m", "no\\u001b[31m"),
                           ("C:\\new", "C:\\\\new")):
        result = pydock("run", "--rm", command)
        assert result.returncode == 127
        assert result.stderr == (f'pydock: exec: "{shown}": executable file not found in '
                                 "$PATH\n")


# -- container names ------------------------------------------------------------------------

# test_state covers `run --name` with names outside docker's rule; these go further.
NAMES = {
    "empty": "",
    "unicode": "ünïcode",
    "control": "a\x01b",
    "escape": "a\x1b[31mb",
    "newline": "new\nline",
    "300-characters": "x" * 300,
    "leading-dash": "-leading",
    "leading-dot": ".dot",
    "slash": "a/b",
    "dot-dot": "..",
    "climbing": "../images",
    "absolute": "/etc",
}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_a_bad_single_dash_name_is_refused(pydock: Pydock, name: str) -> None:
    refusal = refused_unchanged(pydock, ["run", "-name", name, "true"], "invalid container name")
    assert repr(name) in refusal or "300 characters" in refusal


# "--" ends the options, so that a name with a leading dash reaches the command.
COMMANDS = {
    "exec": ["exec", "--", "NAME", "true"],
    "kill": ["kill", "--", "NAME"],
    "stop": ["stop", "-t", "0", "--", "NAME"],
    "logs": ["logs", "--", "NAME"],
    "rm": ["rm", "-f", "--", "NAME"],
    "inspect": ["inspect", "--", "NAME"],
    "diff": ["diff", "--", "NAME"],
    "commit": ["commit", "--", "NAME", "committed"],
    "export": ["export", "-o", "OUT", "--", "NAME"],
}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_a_bad_name_is_no_such_container_for_every_command(pydock: Pydock, tmp_path: Path,
                                                          name: str) -> None:
    out = tmp_path / "exported.tar"
    for command in COMMANDS.values():
        args = [name if arg == "NAME" else str(out) if arg == "OUT" else arg for arg in command]
        # Quoted: the name is shown as typed, never as raw control characters.
        refused_unchanged(pydock, args, f"no such container: {name!r} is not a valid container "
                       "name")
    assert not out.exists()


def test_a_name_that_is_a_path_never_reaches_a_record_outside_the_store(
        pydock: Pydock, tmp_path: Path) -> None:
    # A record planted outside the store, whose id leads its driver's remove to yet another
    # directory. Taken for a container, rm would delete both.
    planted, victim = tmp_path / "planted", tmp_path / "victim"
    for directory in (planted, victim):
        directory.mkdir()
        (directory / "keep").write_text("keep\n")
    (planted / "lock").touch()
    record = {"id": f"../../../../../../../..{victim}", "name": "planted", "driver": "copy",
              "image": "x", "image_id": "sha256:" + "0" * 64, "layers": [],
              "spec": spec.build(RunOptions(command=("true",)), {}, "planted", str(planted))}
    (planted / "state.json").write_text(json.dumps(record))
    before = manifest(planted), manifest(victim)
    for name in (str(planted), f"../../{planted.name}"):
        for args in (["rm", "-f", name], ["inspect", name], ["logs", name]):
            refused_unchanged(pydock, args, "is not a valid container name")
    assert (manifest(planted), manifest(victim)) == before


# -- image files: import and load -----------------------------------------------------------


def sparse_bomb(claimed: int) -> bytes:
    """A layer of one GNU sparse file (PAX format 0.1) of ``claimed`` bytes: holes, which
    extraction writes out as zeros, then one block of data."""
    return tar_bytes([reg("bomb", b"x" * 512, pax_headers={
        "GNU.sparse.major": "0", "GNU.sparse.minor": "1", "GNU.sparse.name": "bomb",
        "GNU.sparse.size": str(claimed), "GNU.sparse.map": f"{claimed - 512},512"})])


def claims_size(size: int) -> bytes:
    """A tar whose one member's header says ``size`` bytes, followed by one block of data."""
    info = tarfile.TarInfo("huge")
    info.size = size
    return info.tobuf(tarfile.GNU_FORMAT) + b"x" * 512 + bytes(1024)


def negative_size() -> bytes:
    """A member whose size field is base-256 -1, which tarfile reads as it is."""
    header = bytearray(tarfile.TarInfo("negative").tobuf(tarfile.GNU_FORMAT))
    header[124:136] = b"\xff" * 12
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + bytes(1024)


# Two members, 'first' (3000 bytes) and 'second', then the end-of-archive marker.
TWO = tar_bytes([reg("first", b"1" * 3000), reg("second", b"2" * 100)])
GZIP = gzip.compress(TWO, mtime=0)

IMPORT_FILES: dict[str, tuple[Callable[[Path], Any], str]] = {
    "empty": (lambda p: p.write_bytes(b""), "empty file"),
    "random-bytes": (lambda p: p.write_bytes(bytes(range(256)) * 20), "not a tar archive"),
    "json": (lambda p: p.write_text('{"not": "a tar"}'), "not a tar archive"),
    "directory": (lambda p: p.mkdir(), "is a directory"),
    "cut-in-the-first-header": (lambda p: p.write_bytes(TWO[:100]), "not a tar archive"),
    "cut-after-the-first-header": (lambda p: p.write_bytes(TWO[:512]),
                                   "'first': unexpected end of data"),
    "cut-in-the-first-data": (lambda p: p.write_bytes(TWO[:2000]),
                              "'first': unexpected end of data"),
    "cut-in-the-second-header": (lambda p: p.write_bytes(TWO[:3584 + 300]),
                                 "invalid header or trailing data at byte 3584"),
    "cut-before-the-end-marker": (lambda p: p.write_bytes(TWO[:3584 + 1024]),
                                  "truncated (no end-of-archive marker)"),
    "gzip-of-garbage": (lambda p: p.write_bytes(GZIP[:10] + b"\xff" * 600),
                        "while decompressing data"),
    "gzip-cut-short": (lambda p: p.write_bytes(GZIP[:len(GZIP) // 2]),
                       "Compressed file ended before the end-of-stream marker"),
    "gzip-then-garbage": (lambda p: p.write_bytes(GZIP + b"garbage after it"),
                          "Not a gzipped file"),
    "member-claiming-a-terabyte": (lambda p: p.write_bytes(claims_size(1 << 40)),
                                   "'huge': it claims 1099511627776 bytes, more than the"),
    "sparse-member-claiming-a-petabyte": (lambda p: p.write_bytes(sparse_bomb(1 << 50)),
                                          "'bomb': it claims 1125899906842624 bytes"),
    "member-of-negative-size": (lambda p: p.write_bytes(negative_size()),
                                "'negative': invalid size -1"),
}


@pytest.mark.parametrize(("make", "message"), IMPORT_FILES.values(), ids=IMPORT_FILES.keys())
def test_a_bad_file_to_import_is_refused(pydock: Pydock, tmp_path: Path,
                                         make: Callable[[Path], Any], message: str) -> None:
    source = tmp_path / "image.tar"
    make(source)
    refused_unchanged(pydock, ["image", "import", str(source), "imported"], message)


def test_an_archive_of_many_entries_imports_and_runs(pydock: Pydock, tmp_path: Path) -> None:
    write_tar(tmp_path / "many.tar", [*tree(busybox_rootfs(tmp_path / "rootfs")),
                                      *(reg(f"many/{number}") for number in range(20_000))])
    pydock.ok("image", "import", str(tmp_path / "many.tar"), "many")
    assert_works(pydock("run", "--rm", "--image", "many", "sh", "-c", "ls /many | wc -l"),
                 "20000\n")


def test_a_sparse_file_the_store_can_hold_is_imported_whole(pydock: Pydock,
                                                            tmp_path: Path) -> None:
    (tmp_path / "sparse.tar").write_bytes(sparse_bomb(1 << 20))
    pydock.ok("image", "import", str(tmp_path / "sparse.tar"), "sparse")
    assert json.loads(pydock.ok("image", "inspect", "sparse"))["Size"] == 1 << 20


def docker_archive_manifest_first(path: Path, layers: list[Layer],
                                  manifest_entry: dict[str, Any] | None = None) -> None:
    """A docker archive with manifest.json and the config ahead of the layers, so that a cut
    anywhere in the layers still leaves a manifest to read. ``manifest_entry`` overrides
    fields of the manifest's one entry."""
    config = make_config(layers)
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    paths = [f"{number}/layer.tar" for number in range(len(layers))]
    entry = {"Config": config_name, "RepoTags": ["hostile:1"], "Layers": paths,
             **(manifest_entry or {})}
    write_tar(path, [reg("manifest.json", json.dumps([entry]).encode()), reg(config_name, config),
                     *(reg(name, layer.blob) for layer, name in zip(layers, paths, strict=True))])


def docker_with(**entry: Any) -> Callable[[Path, list[Layer]], Path]:
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        docker_archive_manifest_first(tmp_path / "image.tar", layers, entry)
        return tmp_path / "image.tar"
    return make


def docker_cut(fraction: float) -> Callable[[Path, list[Layer]], Path]:
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        docker_archive_manifest_first(tmp_path / "whole.tar", layers)
        data = (tmp_path / "whole.tar").read_bytes()
        (tmp_path / "image.tar").write_bytes(data[:int(len(data) * fraction)])
        return tmp_path / "image.tar"
    return make


def docker_with_layer(blob: bytes) -> Callable[[Path, list[Layer]], Path]:
    """Archive whose last layer is ``blob``, with a config that expects its diff_id."""
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        hostile = [*layers[:2], Layer(blob, blob)]
        docker_archive(tmp_path / "image.tar", hostile, ["hostile:1"])
        return tmp_path / "image.tar"
    return make


def file_of(data: bytes) -> Callable[[Path, list[Layer]], Path]:
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        (tmp_path / "image.tar").write_bytes(data)
        return tmp_path / "image.tar"
    return make


def tar_of(files: dict[str, bytes]) -> Callable[[Path, list[Layer]], Path]:
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        (tmp_path / "image.tar").write_bytes(tar_bytes([reg(n, d) for n, d in files.items()]))
        return tmp_path / "image.tar"
    return make


def gzipped(make_inner: Callable[[Path, list[Layer]], Path],
            edit: Callable[[bytes], bytes]) -> Callable[[Path, list[Layer]], Path]:
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        data = gzip.compress(make_inner(tmp_path, layers).read_bytes(), mtime=0)
        (tmp_path / "image.tar.gz").write_bytes(edit(data))
        return tmp_path / "image.tar.gz"
    return make


# Changes an OCI layout: (its directory, the parts layout_with passes); any result is ignored.
Edit = Callable[[Path, dict[str, Any]], object]


def layout_with(edit: Edit,
                as_tar: bool = False) -> Callable[[Path, list[Layer]], Path]:
    """An OCI layout directory (or a tar of it) changed by ``edit(layout, parts)``; parts
    holds the index, the manifest and the blob paths, as written."""
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        layout = tmp_path / "layout"
        oci_layout(layout, layers, "localhost/hostile:1")
        index = json.loads((layout / "index.json").read_text())
        manifest_digest = index["manifests"][0]["digest"]
        manifest_path = layout / "blobs" / "sha256" / manifest_digest[7:]
        document = json.loads(manifest_path.read_bytes())
        parts = {"index": index, "manifest": document, "manifest_path": manifest_path,
                 "config_path": layout / "blobs" / "sha256" / document["config"]["digest"][7:],
                 "layer_path": layout / "blobs" / "sha256" / document["layers"][0]["digest"][7:]}
        edit(layout, parts)
        return write_tar(tmp_path / "layout.tar", tree(layout)) if as_tar else layout
    return make


def set_index(change: Callable[[dict[str, Any]], Any]) -> Edit:
    def edit(layout: Path, parts: dict[str, Any]) -> None:
        change(parts["index"])
        (layout / "index.json").write_text(json.dumps(parts["index"]))
    return edit


def rewrite_manifest(change: Callable[[dict[str, Any]], Any]) -> Edit:
    """Change the manifest and store it under its new digest, as a valid layout would."""
    def edit(layout: Path, parts: dict[str, Any]) -> None:
        change(parts["manifest"])
        data = json.dumps(parts["manifest"]).encode()
        digest = hashlib.sha256(data).hexdigest()
        (layout / "blobs" / "sha256" / digest).write_bytes(data)
        parts["index"]["manifests"][0].update(digest=f"sha256:{digest}", size=len(data))
        (layout / "index.json").write_text(json.dumps(parts["index"]))
    return edit


def nested_indexes(depth: int, platform: dict[str, str] | None = None) -> Edit:
    """The image's manifest below ``depth`` indexes, the innermost naming its platform."""
    def edit(layout: Path, parts: dict[str, Any]) -> None:
        descriptor = parts["index"]["manifests"][0]
        if platform is not None:
            descriptor = {**descriptor, "platform": platform}
        for _ in range(depth):
            data = json.dumps({"schemaVersion": 2, "manifests": [descriptor]}).encode()
            digest = hashlib.sha256(data).hexdigest()
            (layout / "blobs" / "sha256" / digest).write_bytes(data)
            descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json",
                          "digest": f"sha256:{digest}", "size": len(data)}
        parts["index"]["manifests"] = [descriptor]
        (layout / "index.json").write_text(json.dumps(parts["index"]))
    return edit


def blob_symlink_out(layout: Path, parts: dict[str, Any]) -> None:
    parts["layer_path"].unlink()
    parts["layer_path"].symlink_to("../../../../../../../../etc/passwd")


BadArchive = Callable[[Path, list[Layer]], Path]

# test_image_transfer's bad_inputs and hostile-path tests cover the rest.
LOAD_FILES: dict[str, tuple[BadArchive, str]] = {
    "empty": (file_of(b""), "empty file"),
    "json": (file_of(b'{"a": 1}'), "not a tar archive"),
    "gzip-of-garbage": (file_of(GZIP[:10] + b"\xff" * 600), "while decompressing data"),
    "gzip-cut-short": (gzipped(docker_with(), lambda data: data[:len(data) // 2]),
                       "cannot decompress: Compressed file ended before the end-of-stream"),
    "gzip-then-garbage": (gzipped(docker_with(), lambda data: data + b"garbage"),
                          "cannot decompress: Not a gzipped file"),
    "cut-in-the-first-layer": (docker_cut(0.3), "cannot read tar archive: unexpected end"),
    "cut-in-the-last-layer": (docker_cut(0.9), "cannot read tar archive: unexpected end"),
    "manifest-lists-nothing": (tar_of({"manifest.json": b"[]"}), "manifest.json lists 0 images"),
    "config-path-climbing": (docker_with(Config="../x.json"), "path '../x.json' leaves"),
    "config-missing": (docker_with(Config="nowhere.json"), "no nowhere.json in the archive"),
    "layers-not-a-list": (docker_with(Layers="0/layer.tar"), "Layers: expected a JSON array"),
    "fewer-layers-than-diff-ids": (docker_with(Layers=["0/layer.tar"]),
                                   "1 layers but its config has 3 diff_ids"),
    "repo-tag-malformed": (docker_with(RepoTags=["NOT/valid"]), "invalid image reference"),
    "repo-tag-not-a-string": (docker_with(RepoTags=[5]), "RepoTags: expected a JSON string"),
    "layer-not-a-tar": (docker_with_layer(bytes(range(256)) * 8), "cannot read tar archive"),
    "layer-gzip-cut-short": (docker_with_layer(gzip.compress(TWO)[:-10]),
                             "Compressed file ended before the end-of-stream marker"),
    "layer-sparse-bomb": (docker_with_layer(sparse_bomb(1 << 50)), "'bomb': it claims"),
    "oci-no-oci-layout": (layout_with(lambda layout, _: (layout / "oci-layout").unlink()),
                          "cannot open oci-layout"),
    "oci-index-not-json": (layout_with(lambda layout, _: (layout / "index.json").write_text(
        "{")), "index.json: invalid JSON"),
    "oci-index-empty": (layout_with(set_index(lambda index: index.update(manifests=[]))),
                        "index.json lists 0 manifests"),
    "oci-index-manifests-not-a-list": (layout_with(set_index(
        lambda index: index.update(manifests={}))), "manifests: expected a JSON array"),
    "oci-digest-climbing": (layout_with(set_index(lambda index: index["manifests"][0].update(
        digest="sha256:../../../../etc/passwd"))), "is not a sha256 digest"),
    "oci-digest-sha512": (layout_with(set_index(lambda index: index["manifests"][0].update(
        digest="sha512:" + "0" * 128))), "is not a sha256 digest"),
    "oci-manifest-missing": (layout_with(lambda _, parts: parts["manifest_path"].unlink()),
                             "cannot open blobs/sha256/"),
    "oci-manifest-altered": (layout_with(lambda _, parts: parts["manifest_path"].write_bytes(
        parts["manifest_path"].read_bytes() + b" ")), "content does not match its digest"),
    "oci-manifest-size-wrong": (layout_with(set_index(
        lambda index: index["manifests"][0].update(size=1))), "size does not match"),
    "oci-manifest-media-type": (layout_with(rewrite_manifest(
        lambda document: document.update(mediaType="application/x-evil"))),
        "unsupported media type 'application/x-evil'"),
    "oci-config-missing": (layout_with(lambda _, parts: parts["config_path"].unlink()),
                           "cannot open blobs/sha256/"),
    "oci-config-altered": (layout_with(lambda _, parts: parts["config_path"].write_bytes(
        parts["config_path"].read_bytes().replace(b"amd64", b"arm64"))),
        "content does not match its digest"),
    "oci-layer-missing": (layout_with(lambda _, parts: parts["layer_path"].unlink()),
                          "cannot open blobs/sha256/"),
    "oci-layer-size-wrong": (layout_with(rewrite_manifest(
        lambda document: document["layers"][0].update(size=document["layers"][0]["size"] + 1))),
        "bytes where its descriptor says"),
    "oci-indexes-nested-too-deep": (layout_with(nested_indexes(5)), "nested too deeply"),
    "oci-no-image-for-this-platform": (layout_with(nested_indexes(1, {"os": "windows",
                                                                      "architecture": "amd64"})),
                                       "no image for linux/"),
    "oci-tar-blob-symlinked-out": (layout_with(blob_symlink_out, as_tar=True), "leaves the"),
}


@pytest.mark.parametrize(("make", "message"), LOAD_FILES.values(), ids=LOAD_FILES.keys())
def test_a_bad_file_to_load_is_refused(pydock: Pydock, tmp_path: Path, layers: list[Layer],
                                       make: BadArchive, message: str) -> None:
    source = make(tmp_path, layers)
    refused_unchanged(pydock, ["image", "load", "-i", str(source)], message)


# -- image configs --------------------------------------------------------------------------


@dataclass(frozen=True)
class AtLoad:
    """``image load`` refuses the archive with this message."""

    message: str


@dataclass(frozen=True)
class AtRun:
    """The image loads; ``run --rm`` of it exits ``code``, with this stdout, or with an
    error line holding ``error``."""

    code: int
    stdout: str = ""
    error: str = ""


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


HUGE = "v" * 100_000
CONFIGS: dict[str, tuple[dict[str, Any], AtLoad | AtRun]] = {
    "env-not-strings": ({"Env": ["A=1", 1, None]}, AtLoad("config.Env: expected a list of")),
    "env-a-string": ({"Env": "A=1"}, AtLoad("config.Env: expected a list of strings")),
    "env-with-a-nul": ({"Env": ["A=b\0c"]}, AtLoad("config.Env: contains a NUL byte")),
    # Entries without "=" or a key name nothing: docker passes them on, pydock drops them.
    "env-without-equals": ({"Env": ["LONELY", "=x", "A=1"],
                            "Cmd": sh("echo $A; env | grep -e LONELY -e ^= || echo none")},
                           AtRun(0, "1\nnone\n")),
    "env-100k-value": ({"Env": [f"BIG={HUGE}"], "Cmd": sh("echo ${#BIG}")}, AtRun(0, "100000\n")),
    # More than the kernel takes in one string (32 pages): refused by execve, as in docker.
    "env-200k-value": ({"Env": [f"BIG={HUGE * 2}"], "Cmd": ["true"]},
                       AtRun(125, error='exec "true": Argument list too long')),
    # Docker's StrSlice: one string is a list of one, not a shell command line.
    "cmd-a-string": ({"Cmd": "echo hi"},
                     AtRun(127, error='exec: "echo hi": executable file not found in $PATH')),
    "cmd-an-object": ({"Cmd": {"echo": "hi"}}, AtLoad("config.Cmd: expected a string or a")),
    "cmd-not-strings": ({"Cmd": ["echo", 1]}, AtLoad("config.Cmd: expected a string or a")),
    "cmd-with-a-nul": ({"Cmd": ["echo", "a\0b"]}, AtLoad("config.Cmd: contains a NUL byte")),
    "entrypoint-null": ({"Entrypoint": None, "Cmd": ["echo", "ok"]}, AtRun(0, "ok\n")),
    "entrypoint-empty-string": ({"Entrypoint": "", "Cmd": ["echo", "ok"]}, AtRun(0, "ok\n")),
    # Docker's reset: [""] is how `--entrypoint ""` clears an entrypoint.
    "entrypoint-list-of-empty": ({"Entrypoint": [""], "Cmd": ["echo", "ok"]}, AtRun(0, "ok\n")),
    "entrypoint-a-string": ({"Entrypoint": "echo", "Cmd": ["ok"]}, AtRun(0, "ok\n")),
    "entrypoint-a-number": ({"Entrypoint": 5}, AtLoad("config.Entrypoint: expected a string")),
    "workdir-relative": ({"WorkingDir": "rel", "Cmd": ["true"]},
                         AtRun(125, error="working directory 'rel' must be an absolute path")),
    "workdir-climbing": ({"WorkingDir": "/a/../../b", "Cmd": sh("pwd; test -e /a || echo none")},
                         AtRun(0, "/b\nnone\n")),
    "workdir-with-a-nul": ({"WorkingDir": "/a\0b"}, AtLoad("config.WorkingDir: contains a NUL")),
    "workdir-a-number": ({"WorkingDir": 7}, AtLoad("config.WorkingDir: expected a string")),
    "user-junk": ({"User": "a b:c:d", "Cmd": ["true"]}, AtRun(125, error="invalid user 'a b")),
    "user-a-number": ({"User": 5}, AtLoad("config.User: expected a string")),
    "user-unknown": ({"User": "ghost", "Cmd": ["true"]},
                     AtRun(125, error="unable to find user ghost")),
    "no-command-at-all": ({}, AtRun(125, error="no command given and the image has no")),
}
DOCUMENTS: dict[str, tuple[dict[str, Any], AtLoad | AtRun]] = {
    "config-a-list": ({"config": ["Cmd"]}, AtLoad("config: expected a JSON object")),
    "config-a-string": ({"config": "Cmd"}, AtLoad("config: expected a JSON object")),
    "config-null": ({"config": None}, AtRun(125, error="no command given")),
    "config-10-mb": ({"config": {"Cmd": ["true"], "Labels": {"x": "y" * (10 << 20)}}},
                     AtLoad("bytes is too large for an image document")),
    "created-a-number": ({"created": 1700000000}, AtLoad("created: expected a JSON string")),
    "created-not-a-date": ({"created": "yesterday", "config": {"Cmd": ["echo", "ok"]}},
                           AtRun(0, "ok\n")),
}
CASES = {**{name: ({"config": run_config}, outcome)
            for name, (run_config, outcome) in CONFIGS.items()}, **DOCUMENTS}


@pytest.mark.parametrize(("document", "outcome"), CASES.values(), ids=CASES.keys())
def test_absurd_image_configs_work_as_in_docker_or_fail_in_one_line(
        pydock: Pydock, tmp_path: Path, layers: list[Layer], document: dict[str, Any],
        outcome: AtLoad | AtRun) -> None:
    config = json.loads(make_config(layers))
    config.update(document)
    archive, blob = tmp_path / "image.tar", json.dumps(config).encode()
    docker_archive(archive, layers, ["absurd:1"], config=blob)
    if isinstance(outcome, AtLoad):
        refused_unchanged(pydock, ["image", "load", "-i", str(archive)], outcome.message)
        return
    pydock.ok("image", "load", "-i", str(archive))
    before = manifest(pydock.root)
    if outcome.error:
        pydock.refused("run", "--rm", "--image", "absurd:1", code=outcome.code,
                       match=outcome.error)
    else:
        result = pydock("run", "--rm", "--image", "absurd:1")
        assert (result.returncode, result.stdout) == (outcome.code, outcome.stdout), result
        assert "Traceback" not in result.stderr
    assert diff_manifests(before, manifest(pydock.root)) == []
    # image ls reads the config too; and it is kept as it came, odd values and all.
    pydock.ok("image", "ls")
    image = json.loads(pydock.ok("image", "inspect", "absurd:1"))
    assert image["Id"] == f"sha256:{hashlib.sha256(blob).hexdigest()}"


# -- big arguments and environments, which work ----------------------------------------------


def md5_line(data: str) -> str:
    return f"{hashlib.md5(data.encode()).hexdigest()}  -\n"


def test_a_100k_command_line_of_many_arguments_arrives_intact(pydock: Pydock) -> None:
    args = [f"argument-{number:04d}-" + "y" * 40 for number in range(2000)]
    assert sum(map(len, args)) > 100_000
    result = pydock("run", "--rm", "sh", "-c", 'printf "%s\\n" "$@" | md5sum', "sh", *args)
    assert_works(result, md5_line("".join(f"{arg}\n" for arg in args)))


def test_a_single_100k_argument_arrives_intact(pydock: Pydock) -> None:
    argument = "".join(chr(ord("a") + number % 26) for number in range(100_000))
    result = pydock("run", "--rm", "sh", "-c", 'printf %s "$1" | md5sum', "sh", argument)
    assert_works(result, md5_line(argument))


def test_a_thousand_environment_variables_arrive_intact(pydock: Pydock) -> None:
    env = [f"VAR{number:04d}=value {number} = {'z' * (number % 50)}" for number in range(1000)]
    flags = [arg for item in env for arg in ("-e", item)]
    result = pydock("run", "--rm", *flags, "sh", "-c", "env | grep ^VAR | sort | md5sum")
    assert_works(result, md5_line("".join(f"{item}\n" for item in env)))


def test_a_100k_environment_value_arrives_intact(pydock: Pydock) -> None:
    value = "".join(chr(ord("A") + number % 26) for number in range(100_000))
    result = pydock("run", "--rm", "-e", f"BIG={value}", "sh", "-c", 'printf %s "$BIG" | md5sum')
    assert_works(result, md5_line(value))
