#!/usr/bin/env bash
# Runs go-sdk v1.8.0's own tests of the two packages mcpmesh's patch 3
# changes (mcp and internal/jsonrpc2) against the patched sources: the
# release's module from the Go module proxy, with this directory's non-test
# sources laid over it. The copy here left the SDK's tests out; this keeps
# the patches answerable to them. `make patched-sdk` (part of `make test`)
# runs it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=v1.8.0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dir=$(cd "$work" && go mod download -json "github.com/modelcontextprotocol/go-sdk@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$dir" ] || [ ! -d "$dir/mcp" ]; then
	echo "upstream-tests: could not download go-sdk $version" >&2
	exit 1
fi
cp -r "$dir" "$work/sdk"
chmod -R u+w "$work/sdk"
(cd "$here" && find . -name '*.go' ! -name '*_test.go') | while read -r f; do
	cp "$here/$f" "$work/sdk/$f"
done
# Patch 2 renamed a function the release's tests call; the shim restores it.
cp "$here/upstream-shim_test.go.txt" "$work/sdk/mcp/zz_mcpmesh_shim_test.go"
cd "$work/sdk"
go test -count=1 -timeout 5m "$@" ./internal/jsonrpc2/ ./mcp/
