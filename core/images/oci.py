"""The vocabulary of OCI image layouts and docker archives that loading and saving share.

An OCI image layout is a directory (or a tar of one) holding ``oci-layout``, ``index.json``
and content-addressed ``blobs/sha256/<hex>``; the index lists manifests, each naming a config
and layer blobs. A docker archive (``docker save``) has a ``manifest.json`` instead, listing
configs and layer tars by path.

Names travel in an OCI index's annotations: ``io.containerd.image.name`` (containerd, docker)
and ``org.opencontainers.image.ref.name``, which podman fills with the full reference
(``name:tag``) and ``skopeo copy ... oci:DIR:latest`` and containerd with a bare tag. pydock
writes the tag alone in ``ref.name`` (as skopeo, containerd and umoci read it) and the full
name in containerd's, and reads the first that holds a full reference.
"""

from __future__ import annotations

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
# What loading accepts besides OCI's own: docker's equivalents, which docker save writes.
INDEX_TYPES = {OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = {OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"}
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def blob_path(digest: str) -> str:
    """Where the blob ``digest`` (``sha256:<hex>``) sits in an OCI layout."""
    return f"blobs/sha256/{digest.removeprefix('sha256:')}"
