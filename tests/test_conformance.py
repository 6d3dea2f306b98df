"""pydock's own run of the storage-driver conformance suite (:mod:`pydock.testing.conformance`)
over its three built-in drivers; the command a driver author runs; and proof that the suite
fails a driver that is wrong, with a message that says where."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from helpers import DRIVERS

from pydock.core.driver import Mount
from pydock.core.layers.flatten import apply_layer, flatten
from pydock.core.layers.format import OPAQUE_XATTR, is_whiteout
from pydock.core.layers.treecopy import copy_tree
from pydock.core.plugins import driver_home
from pydock.drivers.copy import CopyDriver
from pydock.drivers.overlay import FIXED_OPTIONS, OverlayDriver
from pydock.testing import conformance
from pydock.testing.conformance import CASES, Case, ConformanceFailure, run_case
from pydock.testing.pytest_plugin import run_conformance_case

PYTEST = str(Path(sys.executable).with_name("pytest"))

@pytest.mark.needs_root
@pytest.mark.parametrize(("driver_name", "case"),
                         [pytest.param(driver_name, case, id=f"{driver_name}-{case.name}")
                          for driver_name in DRIVERS for case in CASES])
def test_builtin_driver_conforms(driver_name: str, case: Case, tmp_path: Path) -> None:
    run_conformance_case(case, driver_name, tmp_path)


@pytest.mark.needs_root
def test_the_authors_command_passes_for_the_copy_driver(tmp_path: Path) -> None:
    # Run from an empty directory, as an author's project would be; --basetemp and no cache
    # keep the inner session's files inside this test's own temporary directory.
    result = subprocess.run(
        [PYTEST, "--pyargs", "pydock.testing", "--pydock-driver", "copy", "-q",
         f"--basetemp={tmp_path / 'inner'}", "-p", "no:cacheprovider"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert f"{len(CASES)} passed" in result.stdout


def test_the_suite_collects_every_case_for_each_builtin_driver_by_default(tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTEST, "--pyargs", "pydock.testing", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    ids = [line.split("::")[-1] for line in result.stdout.splitlines() if "::" in line]
    assert len(ids) == len(DRIVERS) * len(CASES)
    assert "test_case[overlay-layer_file_update]" in ids
    assert "test_case[bind-available_explains_itself]" in ids


def test_an_unknown_driver_name_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTEST, "--pyargs", "pydock.testing", "--pydock-driver", "nosuch", "-p",
         "no:cacheprovider"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--pydock-driver: unknown storage driver 'nosuch'" in result.stderr


class IgnoresWhiteouts(CopyDriver):
    """Copies each layer over the ones below as a plain tree: whiteouts and opaque markers are
    dropped instead of obeyed, so nothing a layer deletes ever goes away."""

    name = "ignores-whiteouts"

    def prepare(self, container_id: str, layers: Sequence[Path]) -> None:
        self.make_home()
        top = self.container_dir(container_id)
        top.mkdir(mode=0o700)
        self.rootfs_dir(container_id).mkdir(mode=0o700)
        flatten(layers[:1], self.copy_dir(container_id))
        for layer in layers[1:]:
            plain = top / "plain"
            copy_tree(layer, plain)
            for dirpath, _dirnames, filenames in os.walk(plain):
                if OPAQUE_XATTR in os.listxattr(dirpath):
                    os.removexattr(dirpath, OPAQUE_XATTR)
                for name in filenames:
                    if is_whiteout(os.lstat(os.path.join(dirpath, name))):
                        os.unlink(os.path.join(dirpath, name))
            apply_layer(plain, self.copy_dir(container_id))
            shutil.rmtree(plain)


@pytest.mark.needs_root
def test_a_driver_that_ignores_whiteouts_fails_the_suite_readably(tmp_path: Path) -> None:
    def factory(root: Path) -> CopyDriver:
        return IgnoresWhiteouts(driver_home(root, IgnoresWhiteouts.name))

    failures = {}
    # layers_128 only adds files: it would cost the most and show nothing here.
    for case in [c for c in CASES if c.name != "layers_128"]:
        try:
            run_case(case, IgnoresWhiteouts.name, tmp_path / case.name, factory)
        except ConformanceFailure as exc:
            failures[case.name] = str(exc)
    assert {"basic", "remove_directory_in_lower_layer", "deleted_files_in_child_snapshot",
            "directory_permission_on_commit", "move_file_from_lower_layer",
            "opaque_directory_replacement"} <= failures.keys()
    # What it gets right still passes: the suite tells this failure from the harness failing.
    assert not {"chown", "xattrs", "layer_file_update", "file_to_dir_and_dir_to_file",
                "view_readonly"} & failures.keys()
    assert failures["deleted_files_in_child_snapshot"] == (
        "ignores-whiteouts: case deleted_files_in_child_snapshot: a container on layers 1..2, "
        "before making layer 3: the container's root differs from the reference tree (first "
        "tree: the reference, a plain directory; second: the driver's)\n"
        "  /foobar: only in the second tree (file)")


def test_the_module_docstring_lists_every_case_and_carve_out() -> None:
    doc = conformance.__doc__ or ""
    assert [c.name for c in CASES if f"``{c.name}``" not in doc] == []
    for name in conformance.KERNEL_OVERLAY_DRIVERS | conformance.SHARED_ROOT_DRIVERS:
        assert f"- ``{name}``, " in doc


class OnKernelDefaults(OverlayDriver):
    """The overlay driver as it was: index, redirect_dir and metacopy left to the kernel."""

    name = "kernel-defaults"

    def mounts(self, container_id: str, layers: Sequence[Path]) -> list[Mount]:
        return [m._replace(options=tuple(o for o in m.options if o not in FIXED_OPTIONS))
                for m in super().mounts(container_id, layers)]


@pytest.mark.needs_root
def test_an_overlay_driver_that_relies_on_kernel_defaults_fails_readably(tmp_path: Path) -> None:
    [case] = [c for c in CASES if c.name == "overlay_mount_options"]
    with pytest.raises(ConformanceFailure) as failure:
        run_case(case, OnKernelDefaults.name, tmp_path,
                 lambda root: OnKernelDefaults(driver_home(root, OnKernelDefaults.name)))
    assert str(failure.value) == (
        "kernel-defaults: case overlay_mount_options: an overlay mount on one layer must turn "
        "off index, redirect_dir, metacopy explicitly (kernel defaults vary); it has "
        "index=(not given), redirect_dir=(not given), metacopy=(not given)")
