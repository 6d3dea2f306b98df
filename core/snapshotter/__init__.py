"""Any pydock storage driver as a containerd snapshotter (``pydock snapshotter serve``).

containerd takes external snapshotters over gRPC as *proxy plugins*. This package serves
containerd's ``containerd.services.snapshots.v1.Snapshots`` API on a unix socket, backed by
one pydock driver, and keeps the snapshot graph in a storage root of its own. docs/containerd.md
gives the model: committed snapshots are layer directories in the overlay format, active
and view snapshots are the driver's containers.
"""
