"""Images: the store under ``<root>``, the embedded default image, and image transfer.

An image is an OCI config plus a chain of content-addressed layers. This package keeps them
(the store), makes the default image without network, and moves images in and out of
pydock (rootfs tarball import, docker/OCI archive load and save).

May import: the ground floor, the plugin contract and :mod:`pydock.core.layers`.

Where to start:

* :class:`pydock.core.images.store.ImageStore`: resolve a reference, add layers and images,
  remove them.
* :func:`pydock.core.images.default.build_default_image`: the image ``run`` uses without
  ``--image``.
* :func:`pydock.core.images.load.load_archive` / :func:`~pydock.core.images.save.save_archive`:
  ``image load`` / ``save``.
* :func:`pydock.core.images.rootfs_tarball.import_rootfs_tarball`: ``image import``.
"""
