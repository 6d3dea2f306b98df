"""Registries: ``pull``, ``push``, ``login`` and ``logout`` over the OCI distribution API.

The registry HTTP API v2 (docker's, standardised as the OCI distribution spec), spoken with
httpx, which only these commands import: a ``pydock run`` of a local image never loads
anything here, and a ``run --image REF`` of a missing image loads it only then.

May import: what :mod:`pydock.core.images` may, and the image store beside it.

Where to start:

* :mod:`.client`: one repository on one registry; TLS or plain HTTP, authentication (anonymous,
  basic, bearer tokens from the ``WWW-Authenticate`` challenge), retries, errors as one line.
* :mod:`.pull` / :mod:`.push`: an image between a registry and the store, blobs kept as they
  came (:mod:`pydock.core.images.blobs` says why) so manifest digests and image ids survive.
* :mod:`.credentials` / :mod:`.certs`: the files users already have (``auth.json``,
  ``~/.docker/config.json``, ``certs.d``).
"""
