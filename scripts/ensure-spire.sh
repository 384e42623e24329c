#!/usr/bin/env bash
# Prints (last line of stdout) a directory holding spire-server and spire-agent v1.15.3, building them
# into target/spire/ the first time. An operator's own binaries win: set SPIRE_BIN_DIR.
#   usage: scripts/ensure-spire.sh            (progress on stderr, the directory on stdout)
# SPIRE is never committed; it is built from the exact release source by ../shared/tools/build-spire.sh
# where that tool exists (plain `go install ...@v1.15.3` is refused by the module proxy on our build
# machines), otherwise by `go install`.
set -euo pipefail
version=v1.15.3
root=$(cd "$(dirname "$0")/.." && pwd)

have() { [ -x "$1/spire-server" ] && [ -x "$1/spire-agent" ]; }

if [ -n "${SPIRE_BIN_DIR:-}" ]; then
  if have "$SPIRE_BIN_DIR"; then (cd "$SPIRE_BIN_DIR" && pwd); exit 0; fi
  echo "SPIRE_BIN_DIR=$SPIRE_BIN_DIR has no executable spire-server and spire-agent" >&2
  exit 1
fi

out="$root/target/spire"
if have "$out" && [ "$(cat "$out/.version" 2>/dev/null)" = "$version" ]; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "Go is needed to build SPIRE $version (or set SPIRE_BIN_DIR)" >&2; exit 1; }
mkdir -p "$out"
builder="$root/../shared/tools/build-spire.sh"
if [ -x "$builder" ] || [ -f "$builder" ]; then
  echo "building SPIRE $version into $out with $builder (about 5 minutes the first time)" >&2
  bash "$builder" "$out" "$version" >&2
else
  echo "installing SPIRE $version into $out with go install" >&2
  ldflags="-X github.com/spiffe/spire/pkg/common/version.gittag=${version#v}"
  GOBIN="$out" go install -ldflags "$ldflags" \
    "github.com/spiffe/spire/cmd/spire-server@$version" "github.com/spiffe/spire/cmd/spire-agent@$version" >&2
  echo "$version" >"$out/.version"
fi
have "$out" || { echo "SPIRE build produced no binaries in $out" >&2; exit 1; }
"$out/spire-server" --version >&2
echo "$out"
