"""The committed gRPC modules are exactly what scripts/generate-containerd-api.sh makes from
Debian's containerd .proto files: an edit by hand, or a containerd update, shows here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "core" / "snapshotter" / "api"


def test_the_generated_modules_have_not_drifted(tmp_path: Path) -> None:
    # The pinned grpcio-tools goes into a virtualenv of the test's own, not the user's cache.
    env = {**os.environ, "PYDOCK_PROTOC_VENV": str(tmp_path / "grpcio-tools")}
    out = tmp_path / "api"
    subprocess.run(["bash", str(REPO / "scripts" / "generate-containerd-api.sh"), str(out)],
                   check=True, capture_output=True, timeout=300, env=env)
    generated = sorted(p.name for p in out.iterdir())
    committed = sorted(p.name for p in COMMITTED.iterdir()
                       if p.name != "__init__.py" and p.name != "__pycache__")
    assert generated == committed
    for name in generated:
        assert (out / name).read_bytes() == (COMMITTED / name).read_bytes(), (
            f"core/snapshotter/api/{name} differs from what the script generates: "
            "run scripts/generate-containerd-api.sh and commit the result")


def test_the_modules_describe_containerds_service() -> None:
    from pydock.core.snapshotter.api import snapshots_pb2

    service = snapshots_pb2.DESCRIPTOR.services_by_name["Snapshots"]
    assert service.full_name == "containerd.services.snapshots.v1.Snapshots"
    assert {m.name for m in service.methods} == {
        "Prepare", "View", "Mounts", "Commit", "Remove", "Stat", "Update", "List", "Usage",
        "Cleanup"}
