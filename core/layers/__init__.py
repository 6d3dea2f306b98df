"""The layer format: how an image layer is read, written, flattened and compared.

Said once, here: the OCI tar layer with overlay's whiteouts (``.wh.`` files and the opaque
directory marker), unpacked safely, packed back, applied onto a tree, and diffed. Drivers
use it, so it knows nothing of images, containers or the runtime.

May import: the ground floor and the plugin contract (the modules at the top of ``core/``).

Where to start:

* :func:`pydock.core.layers.unpack.extract_tar`: a layer tar into a directory, never outside it.
* :mod:`pydock.core.layers.format`: the format's vocabulary (whiteouts, opaque directories).
* :func:`pydock.core.layers.pack.write_layer_tar` and
  :func:`pydock.core.layers.flatten.flatten`: a changed tree out to a layer; a chain of layers
  onto one tree.
* :mod:`pydock.core.layers.changes`: what a container changed, as ``docker diff`` prints it.
* :func:`pydock.core.layers.treecopy.copy_tree`: a faithful copy of a tree (hard links, xattrs).
"""
