"""The runtime: one container's processes, namespaces, mounts, limits and privileges.

Everything that happens to a container's process, from the fork to its exit status: spawning
it in fresh namespaces, mounting its root from the driver's mount specs, cgroup limits,
capabilities, users, the monitor that outlives the CLI, its logs and its terminal. It knows
drivers only by the mount specs they return, and images only as configs handed to it.

May import: the ground floor, the plugin contract, :mod:`pydock.core.layers` and
:mod:`pydock.core.images`.

Where to start:

* :func:`pydock.core.runtime.spawn.process_spec`: how the runtime reads a container spec.
* :func:`pydock.core.runtime.spawn.start`: fork, unshare, set up the root, exec.
* :mod:`pydock.core.runtime.rootfs`: the mount sequence inside the container's namespace.
* :func:`pydock.core.runtime.monitor.launch`: the per-container monitor process.
* :mod:`pydock.core.runtime.cgroups`: every container's cgroup and cgroup namespace;
  ``-m``, ``--cpus`` and ``--pids-limit``.
* :mod:`pydock.core.runtime.devices`: which device nodes open; ``--device``.
"""
