"""Images for the registry tests, made here and put into registries with skopeo."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from helpers import Layer, blob_writer, make_config, oci_layout

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def skopeo(*args: str) -> str:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"skopeo {' '.join(args)}: {result.stderr}"
    return result.stdout


def skopeo_push(layout: Path, target: str, *options: str) -> str:
    """Copy the OCI layout to ``docker://target``; the manifest digest the registry has."""
    skopeo("copy", "-q", "--dest-tls-verify=false", *options, f"oci:{layout}",
           f"docker://{target}")
    return remote_digest(target)


def remote_digest(target: str) -> str:
    digest: str = json.loads(skopeo("inspect", "--tls-verify=false",
                                    f"docker://{target}"))["Digest"]
    return digest


def remote_config_digest(target: str) -> str:
    manifest = json.loads(skopeo("inspect", "--tls-verify=false", "--raw",
                                 f"docker://{target}"))
    digest: str = manifest["config"]["digest"]
    return digest


def three_layers(directory: Path, layers: list[Layer]) -> str:
    """The three-layer image as an OCI layout; its image id (the config's digest)."""
    config = oci_layout(directory, layers, "1")
    return f"sha256:{hashlib.sha256(config).hexdigest()}"


def multi_arch(directory: Path, layers: list[Layer]) -> dict[str, str]:
    """An OCI layout whose index has an amd64 and an arm64 image (the arm64 one has only
    the first two layers); ``{"amd64": image id, "arm64": image id}``."""
    blob = blob_writer(directory)

    ids, manifests = {}, []
    for arch, chosen in (("arm64", layers[:2]), ("amd64", layers)):
        config = json.loads(make_config(chosen))
        config["architecture"] = arch
        config_bytes = json.dumps(config).encode()
        ids[arch] = f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"
        layer_type = "application/vnd.oci.image.layer.v1.tar"
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": blob(config_bytes, "application/vnd.oci.image.config.v1+json"),
            "layers": [blob(layer.blob, layer_type + ("+gzip" if layer.blob != layer.tar
                                                      else "")) for layer in chosen],
        }).encode()
        manifests.append({**blob(manifest, OCI_MANIFEST),
                          "platform": {"os": "linux", "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": manifests}).encode()
    descriptor = blob(index, OCI_INDEX)
    descriptor["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2,
                                                      "manifests": [descriptor]}))
    return ids


def zstd_layout(directory: Path, layers: list[Layer]) -> str:
    """The three layers, each zstd-compressed, as an OCI layout; its image id."""
    import zstandard

    blob = blob_writer(directory)

    config = make_config(layers)
    compressor = zstandard.ZstdCompressor()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": blob(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(compressor.compress(layer.tar),
                        "application/vnd.oci.image.layer.v1.tar+zstd") for layer in layers],
    }).encode()
    descriptor = blob(manifest, OCI_MANIFEST)
    descriptor["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2,
                                                      "manifests": [descriptor]}))
    return f"sha256:{hashlib.sha256(config).hexdigest()}"
