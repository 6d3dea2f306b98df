"""pydock-btrfs: a third-party pydock storage driver on btrfs subvolume snapshots.

:mod:`pydock_btrfs.driver` holds the driver, :mod:`pydock_btrfs.plugin` registers it with
pydock (through the ``pydock`` entry-point group; pydock never imports this package by name).
"""
