#!/usr/bin/env bash
# Installs what pydock and its tests need on a fresh Debian/Ubuntu machine, as root:
# system packages from apt (only when missing) and a virtualenv in .venv with pydock
# installed in editable mode. Safe to run again; sourced by demo.sh and test.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "pydock runs containers and needs root: run this with sudo" >&2
    exit 1
fi

# busybox-static: the embedded default image; util-linux: unshare for a test that
# runs pydock without network; btrfs-progs: the reflink test of the copy driver;
# skopeo, umoci, podman: the interoperability tests; runc (and podman): what
# benchmarks/compare.py measures pydock against; python3-venv: the virtualenv; gcc and
# libc6-dev: the isolation tests' static probes (tests/probes/); gcc-aarch64-linux-gnu: the
# test that the committed exec helpers match their source (scripts/build-exec-helper.sh);
# libseccomp2: the library pydock builds containers' seccomp filters with
# (core/runtime/libseccomp.py); docker-registry (distribution 2.8), apache2-utils (htpasswd)
# and openssl: the registries the pull/push/login tests start on 127.0.0.1, with basic auth
# over TLS and a token server's signing key; tini: run --init, whose static build
# (tini-static) is the container's PID 1, as docker's init is (core/runtime/init.py);
# nftables: the bridge network's NAT and -p (core/runtime/nft.py); debootstrap: the Debian
# image the network tests run apt-get in; containerd (with ctr): the containerd the
# snapshotter tests start privately, with pydock as its proxy snapshotter; golang-go and
# golang-github-containerd-containerd-dev: containerd's own snapshotter test suite, built
# offline from Debian's sources against containerd's proxy client, and the .proto files
# pydock's gRPC modules are generated from (scripts/generate-containerd-api.sh).
packages=(busybox-static util-linux btrfs-progs skopeo umoci podman runc gcc libc6-dev
          gcc-aarch64-linux-gnu libseccomp2 docker-registry apache2-utils openssl tini
          nftables debootstrap containerd golang-go golang-github-containerd-containerd-dev)
# The distribution's own python3 (Debian 12: 3.11.2), never whatever python3 comes first
# on PATH: CI then tests exactly what a newcomer's `sudo bash scripts/setup.sh` gets, and a
# newer patch release on a developer's machine cannot hide a use of what 3.11.2 lacks.
python=/usr/bin/python3
if ! "$python" -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    packages+=(python3 python3-venv)
fi
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A .venv made from another interpreter (an earlier setup.sh used the first python3 on
# PATH) is made again from the distribution's.
if [ -x .venv/bin/python ] && [ "$(readlink -f .venv/bin/python)" != "$(readlink -f "$python")" ]; then
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# "strict" editable mode links each source file into build/ and puts that directory on
# sys.path: edits show at once, and no import hook runs on every start (the default mode's
# finder costs about 25 ms per `pydock` command). A new module needs this script re-run.
pip_install=(.venv/bin/python -m pip install --quiet --disable-pip-version-check
             --config-settings editable_mode=strict)
"${pip_install[@]}" -e '.[test,containerd]'
"${pip_install[@]}" -e plugins_example
echo "pydock is installed: $(pwd)/.venv/bin/pydock"
