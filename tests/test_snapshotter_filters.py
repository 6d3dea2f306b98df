"""containerd's filter language as ``List`` receives it (pydock.core.snapshotter.filters).

The corpus and the expectations follow containerd's own filter tests: what containerd's
garbage collector and ``ctr snapshots ls`` send must select what containerd would.
"""

from __future__ import annotations

import pytest

from pydock.core.snapshotter import filters

pytestmark = pytest.mark.quick

CORPUS = {
    "foo-true": ("committed", "foo", "", {"foo": "true"}),
    "bar-bare": ("active", "bar", "foo", {}),
    "foo-complex": ("committed", "foo", "", {"foo": "present", "more complex label": "present"}),
    "bar-true": ("view", "bar", "x", {"bar": "true"}),
    "quoted": ("committed", "fooer", "", {'more complex label with \\ and "': "present"}),
    "quoted-post": ("committed", "fooer", "", {'more complex label with \\ and ".post': "present"}),
    "ref": ("committed", "default/3/sha256:ab", "default/2/sha256:cd",
            {"containerd.io/snapshot.ref": "sha256:ab", "containerd.io/gc.root": "2026"}),
    "dotted": ("committed", "compound", "", {"foo": "omg_asdf.asdf-qwer"}),
}


def selected(*wanted: str) -> list[str]:
    parsed = filters.parse(wanted)
    return [key for key, (kind, name, parent, labels) in CORPUS.items()
            if filters.matches(parsed, filters.snapshot_fields(kind, name, parent, labels))]


@pytest.mark.parametrize(("wanted", "expected"), [
    ((), list(CORPUS)),
    (("",), list(CORPUS)),
    (("name==bar",), ["bar-bare", "bar-true"]),
    (("kind==committed,name==foo",), ["foo-true", "foo-complex"]),
    (("labels.foo",), ["foo-true", "foo-complex", "dotted"]),
    (("labels.foo==omg_asdf.asdf-qwer",), ["dotted"]),
    # != holds where the field is missing: its value is then the empty string.
    (("name==bar,labels.bar!=true",), ["bar-bare"]),
    (('parent==""',), ["foo-true", "foo-complex", "quoted", "quoted-post", "dotted"]),
    (('labels."more complex label"',), ["foo-complex"]),
    (('labels."more complex label with \\\\ and \\""==present',), ["quoted"]),
    (('labels."more complex label with \\\\ and \\"".post==present',), ["quoted-post"]),
    # What containerd asks to find a remote snapshot by its ref (metadata/snapshot.go).
    (('labels."containerd.io/snapshot.ref"==sha256:ab,parent=="default/2/sha256:cd"',),
     ["ref"]),
    (("name~=^foo",), ["foo-true", "foo-complex", "quoted", "quoted-post"]),
    (("name~=/o{2}er$/",), ["quoted", "quoted-post"]),
    (("name~=|o{1,2}e|",), ["quoted", "quoted-post"]),
    # Two filters: either may match.
    (("name==compound", "kind==view"), ["bar-true", "dotted"]),
])
def test_filters_select_what_containerd_selects(wanted: tuple[str, ...],
                                                expected: list[str]) -> None:
    assert selected(*wanted) == expected


@pytest.mark.parametrize("bad", [
    "parent==", "name==foo,", "labels.", "name~=,x", "labels.ns/key==value", "labels.key==/value",
    "labels.|foo|==x", 'labels.?"x"==y', "name=bar", "name===bar", 'name=="open',
    'name=="bad \\q escape"', "name~=(unclosed", 'name=="\\x4"', "name==a b",
    'name=="\\U00110000"',
])
def test_malformed_filters_are_refused(bad: str) -> None:
    with pytest.raises(filters.FilterError):
        filters.parse([bad])


def test_escapes_in_quoted_values_are_go_strings() -> None:
    parsed = filters.parse(['name=="a\\tb\\x41\\u00e9\\101\\""'])
    assert parsed[0][0].value == 'a\tbAéA"'
