"""The storage-driver conformance suite's parts, split as containerd splits its snapshotter
suite: :mod:`.testsuite` (the named cases and the runner), :mod:`.issues` (regression cases,
each citing its issue), :mod:`.overlay_options` (overlay's mount options) and :mod:`.helpers`
(appliers, the harness, the flat reference and the tree comparison). A driver author imports
from :mod:`pydock.testing.conformance`, which names what they need.
"""
