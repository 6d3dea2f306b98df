"""Containers: what the container commands do, and the records that outlive them.

Named containers from ``run`` to ``rm``: creating one (driver, image, runtime), its state on
disk, cleaning up after crashes, and its changes as ``diff``, ``commit`` and ``export``.

May import: the ground floor, the plugin contract, :mod:`pydock.core.layers`,
:mod:`pydock.core.images` and :mod:`pydock.core.runtime`.

Where to start:

* :mod:`pydock.core.containers.spec`: the container spec, the OCI-shaped document ``run``'s
  flags and the image config become, and all the runtime reads.
* :class:`pydock.core.containers.lifecycle.Containers`: run, exec, stop, kill, remove,
  inspect, prune; built on :class:`pydock.core.containers.store.ContainerStore`.
* :class:`pydock.core.containers.state.StateStore`: one record directory per container.
* :mod:`pydock.core.containers.cleanup`: what ``rm -f`` and ``prune`` remove after a crash.
* :mod:`pydock.core.containers.commit`: ``diff``, ``commit`` and ``export``.
"""
