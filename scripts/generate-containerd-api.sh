#!/usr/bin/env bash
# Generates pydock's Python modules for containerd's Snapshots gRPC API into
# core/snapshotter/api (or into the directory given), from the .proto files of containerd 1.6
# that Debian ships in golang-github-containerd-containerd-dev. The generated modules are
# committed; tests/test_containerd_api.py runs this script again and fails on any drift.
#
# gogoproto's options only shape Go code (field names, embedding), never the wire, so they
# are removed rather than generating a gogo module pydock would never use. The proto packages
# stay containerd's (containerd.services.snapshots.v1, containerd.types): the method paths
# containerd calls, /containerd.services.snapshots.v1.Snapshots/Prepare and the rest, come
# from them. Only the files' own paths change, so that the generated imports are pydock's.
#
# grpcio-tools is pinned: the drift check compares byte for byte, and 1.62.3 writes modules
# with no runtime version check (later versions refuse a protobuf or grpcio older than
# themselves), so the `containerd` extra can accept any grpcio >= 1.62 and protobuf >= 4.25.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=$(realpath -m "${1:-core/snapshotter/api}")
api=/usr/share/gocode/src/github.com/containerd/containerd/api
if [ ! -f "$api/services/snapshots/v1/snapshots.proto" ]; then
    echo "containerd's .proto files are missing: apt-get install golang-github-containerd-containerd-dev" >&2
    exit 1
fi
tools=${PYDOCK_PROTOC_VENV:-$HOME/.cache/pydock/grpcio-tools-1.62.3}
if [ ! -x "$tools/bin/python" ]; then
    /usr/bin/python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check grpcio-tools==1.62.3
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
package=pydock/core/snapshotter/api
mkdir -p "$stage/$package"
strip_gogo() {
    sed -E -e '/^import weak "gogoproto\/gogo.proto";$/d' \
           -e '/^[[:space:]]*option \(gogoproto\.[a-z_]+\) = .*;[[:space:]]*$/d' \
           -e 's/ \[\(gogoproto\.[^]]*\]//' \
           -e "s#\"github.com/containerd/containerd/api/types/mount.proto\"#\"$package/mount.proto\"#" \
           "$1"
}
strip_gogo "$api/types/mount.proto" > "$stage/$package/mount.proto"
strip_gogo "$api/services/snapshots/v1/snapshots.proto" > "$stage/$package/snapshots.proto"
if grep -n gogo "$stage/$package"/*.proto >&2; then
    echo "a gogoproto option was left in; the sed expressions above need a look" >&2
    exit 1
fi
"$tools/bin/python" -m grpc_tools.protoc -I "$stage" \
    --python_out="$stage" --pyi_out="$stage" --grpc_python_out="$stage" \
    "$package/mount.proto" "$package/snapshots.proto"
mkdir -p "$out"
# mount.proto defines no service: its empty _grpc module is not kept.
for module in mount_pb2.py mount_pb2.pyi snapshots_pb2.py snapshots_pb2.pyi snapshots_pb2_grpc.py; do
    cp "$stage/$package/$module" "$out/$module"
done
