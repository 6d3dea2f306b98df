"""Image references read as docker reads them, and the names the store keeps.

``debian`` is ``docker.io/library/debian:latest``; the store keys names in docker's familiar
form, so every spelling of one name finds the same image, and ``image ls`` shows them as
docker does. No root, no container, except for the end-to-end ``tag`` checks.
"""

from __future__ import annotations

import json

import pytest

from pydock.core.errors import PydockError
from pydock.core.images.store import Reference, normalize_reference, parse_reference
from pydock.testing.cli import Pydock

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.quick
@pytest.mark.parametrize(("ref", "expected"), [
    ("debian", Reference("docker.io", "library/debian", "latest", None)),
    ("debian:bookworm", Reference("docker.io", "library/debian", "bookworm", None)),
    ("docker.io/library/debian", Reference("docker.io", "library/debian", "latest", None)),
    ("index.docker.io/debian", Reference("docker.io", "library/debian", "latest", None)),
    ("user/x", Reference("docker.io", "user/x", "latest", None)),
    ("docker.io/user/x:1", Reference("docker.io", "user/x", "1", None)),
    ("localhost/x", Reference("localhost", "x", "latest", None)),
    ("localhost:5000/a/b:2", Reference("localhost:5000", "a/b", "2", None)),
    ("127.0.0.1:5000/x", Reference("127.0.0.1:5000", "x", "latest", None)),
    ("quay.io/org/img", Reference("quay.io", "org/img", "latest", None)),
    ("myhost:443/x", Reference("myhost:443", "x", "latest", None)),
    (f"debian@{DIGEST}", Reference("docker.io", "library/debian", None, DIGEST)),
    (f"debian:12@{DIGEST}", Reference("docker.io", "library/debian", "12", DIGEST)),
])
def test_references_are_read_as_docker_reads_them(ref: str, expected: Reference) -> None:
    assert parse_reference(ref) == expected


@pytest.mark.quick
@pytest.mark.parametrize(("ref", "familiar", "full"), [
    ("debian", "debian:latest", "docker.io/library/debian:latest"),
    ("docker.io/library/debian:12", "debian:12", "docker.io/library/debian:12"),
    ("library/debian", "debian:latest", "docker.io/library/debian:latest"),
    ("user/x", "user/x:latest", "docker.io/user/x:latest"),
    ("docker.io/library/a/b", "library/a/b:latest", "docker.io/library/a/b:latest"),
    ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
    (f"debian@{DIGEST}", f"debian@{DIGEST}", f"docker.io/library/debian@{DIGEST}"),
])
def test_names_are_kept_in_dockers_familiar_form(ref: str, familiar: str, full: str) -> None:
    assert normalize_reference(ref) == familiar
    assert str(parse_reference(ref)) == full


@pytest.mark.quick
@pytest.mark.parametrize("ref", [
    "", "Debian", "NOT/valid", "x:", "x@sha256:abc", "x@md5:" + "0" * 32, "/x", "x/", "a//b",
    "x:-tag", "x:" + "t" * 129, "host:port/x", "a" * 300,
])
def test_malformed_references_are_refused(ref: str) -> None:
    with pytest.raises(PydockError, match="invalid image reference"):
        parse_reference(ref)


@pytest.mark.quick
@pytest.mark.needs_root
def test_image_tag_gives_names_reachable_by_every_spelling(pydock: Pydock) -> None:
    pydock.ok("image", "tag", "pydock/default", "debian:12")
    pydock.ok("tag", "debian:12", "localhost:5000/team/tool")
    rows = json.loads(pydock.ok("image", "ls", "--format", "json"))
    names = {(r["Repository"], r["Tag"]) for r in rows}
    assert {("debian", "12"), ("localhost:5000/team/tool", "latest"),
            ("pydock/default", "latest")} <= names
    ids = {r["ID"] for r in rows}
    assert len(ids) == 1
    for spelling in ("debian:12", "docker.io/library/debian:12", "library/debian:12",
                     "index.docker.io/library/debian:12", "docker.io/pydock/default"):
        assert json.loads(pydock.ok("image", "inspect", spelling))["Id"][7:19] in ids
    # Untagging one name leaves the others.
    pydock.ok("image", "rm", "docker.io/library/debian:12")
    pydock.refused("image", "inspect", "debian:12", match="no such image: debian:12")
    pydock.ok("image", "inspect", "localhost:5000/team/tool:latest")


@pytest.mark.quick
@pytest.mark.needs_root
def test_image_tag_refuses_bad_names_and_unknown_images(pydock: Pydock) -> None:
    pydock.ok("image", "tag", "pydock/default", "x")
    pydock.refused("image", "tag", "nosuch", "y", match="no such image: nosuch:latest")
    pydock.refused("tag", "x", "Bad/Name", match="invalid image reference")
    pydock.refused("tag", "x", f"x@{DIGEST}", match="a tag, not a digest")


@pytest.mark.quick
@pytest.mark.needs_root
def test_names_stored_in_full_by_older_versions_are_found_by_short_name(
        pydock: Pydock) -> None:
    image_id = json.loads(pydock.ok("image", "inspect", "pydock/default"))["Id"]
    index = pydock.root / "images" / "repositories.json"
    names = json.loads(index.read_text())
    names["docker.io/library/old:1"] = image_id
    index.write_text(json.dumps(names))
    assert json.loads(pydock.ok("image", "inspect", "old:1"))["Id"] == image_id
    rows = json.loads(pydock.ok("image", "ls", "--format", "json"))
    assert ("old", "1") in {(r["Repository"], r["Tag"]) for r in rows}
