"""Pull and push of a large image through a local registry: pydock, skopeo and podman side by side.

    sudo .venv/bin/python benchmarks/registry_pull.py [--megabytes 250] [--layers 8]

Builds an image of ``--layers`` layers and about ``--megabytes`` MB (uncompressed) from the
host's /usr files, gzip'd by skopeo as it goes into a Debian docker-registry started on
127.0.0.1 (stopped after), then times, once each, into empty stores:

* pull: ``pydock pull``; ``skopeo copy docker://... oci:DIR`` (download and verify, no
  extraction); ``podman pull`` on a private ``--root`` (download, verify, extract);
* push, to a second, empty registry: ``pydock push``; ``skopeo copy oci:DIR docker://...``;
  ``podman push``;
* where pydock's pull time goes: the same blobs fetched and hashed in one thread (network +
  digest), gunzipped (decompression), and the rest (extraction into the store);
* what keeping the blobs costs on disk: ``blobs/`` beside ``layers/``.

One run, no statistics: a benchmark to read, not a timed test.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pydock.testing.registries import registry

PYDOCK = str(Path(sys.executable).with_name("pydock"))


def host_files(limit: int) -> list[Path]:
    files, total = [], 0
    for top in ("/usr/lib", "/usr/share", "/usr/bin"):
        for directory, _dirs, names in os.walk(top):
            for name in sorted(names):
                path = Path(directory) / name
                with contextlib.suppress(OSError):
                    if path.is_file() and not path.is_symlink():
                        size = path.stat().st_size
                        if size < 50 << 20:
                            files.append(path)
                            total += size
                if total >= limit:
                    return files
    return files


def build_layout(workdir: Path, megabytes: int, layers: int) -> Path:
    """An OCI layout of plain layers (skopeo gzips them on the way to the registry)."""
    files = host_files(megabytes << 20)
    layout = workdir / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    descriptors, diff_ids = [], []
    per_layer = -(-len(files) // layers)
    for number in range(layers):
        tar_path = workdir / f"layer{number}.tar"
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in files[number * per_layer:(number + 1) * per_layer]:
                tar.add(path, arcname=str(path).lstrip("/"), recursive=False)
        digest = hashlib.sha256(tar_path.read_bytes()).hexdigest()
        tar_path.rename(blobs / digest)
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": f"sha256:{digest}", "size": (blobs / digest).stat().st_size})
        diff_ids.append(f"sha256:{digest}")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()

    def blob(data: bytes, media_type: str) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": blob(config, "application/vnd.oci.image.config.v1+json"),
                           "layers": descriptors}).encode()
    entry = blob(manifest, "application/vnd.oci.image.manifest.v1+json")
    entry["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return layout


def timed(*command: str, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    took = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {result.stderr}")
    return took


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def breakdown(host: str, repository: str) -> tuple[float, float, float]:
    """Seconds, in one thread, to fetch and hash every layer blob, to gunzip them, and to
    extract the tars (pydock's extraction, into a scratch directory)."""
    import httpx

    with httpx.Client() as client:
        manifest = client.get(f"http://{host}/v2/{repository}/manifests/1", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
                      "application/vnd.docker.distribution.manifest.v2+json"}).json()
        fetched, start = [], time.perf_counter()
        for layer in manifest["layers"]:
            sha256, body = hashlib.sha256(), bytearray()
            with client.stream("GET", f"http://{host}/v2/{repository}/blobs/"
                               f"{layer['digest']}") as response:
                for chunk in response.iter_raw(1 << 20):
                    sha256.update(chunk)
                    body += chunk
            fetched.append(bytes(body))
        network = time.perf_counter() - start
    start = time.perf_counter()
    tars = [gzip.decompress(body) for body in fetched]
    decompress = time.perf_counter() - start
    from pydock.core.layers.unpack import extract_tar

    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        for number, tar in enumerate(tars):
            (Path(scratch) / str(number)).mkdir()
            extract_tar(io.BytesIO(tar), Path(scratch) / str(number))
        extraction = time.perf_counter() - start
    return network, decompress, extraction


@contextlib.contextmanager
def podman(workdir: Path) -> Iterator[list[str]]:
    base = [shutil.which("podman") or "podman", "--root", str(workdir / "podman-root"),
            "--runroot", str(workdir / "podman-run")]
    try:
        yield base
    finally:
        subprocess.run([*base, "system", "reset", "--force"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=250)
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pydock-registry-bench-"))
    rows: list[tuple[str, str, float]] = []
    try:
        layout = build_layout(workdir, args.megabytes, args.layers)
        with registry(workdir / "registry") as source, registry(workdir / "target") as target, \
                podman(workdir) as pod:
            image = f"{source.host}/bench/big:1"
            subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", "--dest-compress",
                            f"oci:{layout}:1", f"docker://{image}"], check=True)
            root = workdir / "pydock-root"
            rows.append(("pull", "pydock pull", timed(PYDOCK, "--root", str(root), "pull",
                                                      image)))
            rows.append(("pull", "skopeo copy docker:// oci:", timed(
                "skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{image}",
                f"oci:{workdir / 'skopeo-out'}:1")))
            rows.append(("pull", "podman pull", timed(*pod, "pull", "-q", "--tls-verify=false",
                                                      image)))
            pushed = f"{target.host}/bench/big:1"
            subprocess.run([PYDOCK, "--root", str(root), "tag", image, pushed], check=True)
            rows.append(("push", "pydock push", timed(PYDOCK, "--root", str(root), "push",
                                                      pushed)))
            rows.append(("push", "skopeo copy oci: docker://", timed(
                "skopeo", "copy", "-q", "--dest-tls-verify=false",
                f"oci:{workdir / 'skopeo-out'}:1", f"docker://{target.host}/bench/skopeo:1")))
            rows.append(("push", "podman push", timed(
                *pod, "push", "-q", "--tls-verify=false", image,
                f"docker://{target.host}/bench/podman:1")))
            network, decompress, extraction = breakdown(source.host, "bench/big")
            layers, blobs = du(root / "layers"), du(root / "blobs")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"## {args.layers} layers, {args.megabytes} MB uncompressed, one run\n")
    print("| what | tool | seconds |\n| --- | --- | ---: |")
    for what, tool, seconds in rows:
        print(f"| {what} | {tool} | {seconds:.2f} |")
    print("\nWhere pydock's pull goes: each part alone, in one thread, on the same blobs "
          f"(the pull runs {4} layers at once, so its wall time is less than the sum):\n")
    print("| part | seconds |\n| --- | ---: |")
    print(f"| network + sha256 of the blobs | {network:.2f} |")
    print(f"| gunzip | {decompress:.2f} |")
    print(f"| extraction into the store's format | {extraction:.2f} |")
    print(f"| sum | {network + decompress + extraction:.2f} |")
    print(f"\nDisk: layers/ {layers / 1e6:.1f} MB, blobs/ {blobs / 1e6:.1f} MB "
          f"(+{100 * blobs / max(layers, 1):.0f}%)")


if __name__ == "__main__":
    main()
