#!/usr/bin/env bash
# govulncheck on every package, against the Go vulnerability database built
# here from the golang.org/x/vulndb module (CI reaches the Go module proxy but
# not vuln.go.dev). Exits non-zero when the code calls a known-vulnerable
# symbol, of the standard library or of a dependency (govulncheck's exit 3);
# a vulnerability only in an imported package or a required module, never
# called, is printed in the summary but does not fail.
#
#   bash .ci/govulncheck.sh            # newest vulndb the proxy serves
#   VULNDB_VERSION=v0.0.0-... bash .ci/govulncheck.sh   # a fixed one
set -euo pipefail
cd "$(dirname "$0")/.."
# go.mod's toolchain line names the Go release to build and scan with; the
# Go installed here defaults to GOTOOLCHAIN=local, which ignores that line.
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

govulncheck_version="${GOVULNCHECK_VERSION:-v1.9.0}"
vulndb_version="${VULNDB_VERSION:-latest}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/helpmesh-govulncheck"
mkdir -p "$cache"

# The scanner, at a pinned version, installed once into the cache.
govulncheck="$cache/bin/govulncheck"
if ! go version -m "$govulncheck" 2>/dev/null | grep -q "mod[[:space:]]*golang.org/x/vuln[[:space:]]*$govulncheck_version[[:space:]]"; then
  echo "installing golang.org/x/vuln/cmd/govulncheck@$govulncheck_version"
  # Outside the module, so its requirements never touch go.mod or go.sum.
  (cd "$cache" && GOBIN="$cache/bin" go install "golang.org/x/vuln/cmd/govulncheck@$govulncheck_version")
fi

# The data: x/vulndb's data/osv, one OSV file per report, from the proxy.
if ! dl=$(cd "$cache" && go mod download -json "golang.org/x/vulndb@$vulndb_version"); then
  echo "$dl"; exit 1
fi
field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" <<<"$dl"; }
vulndb_resolved=$(field Version)
vulndb_dir=$(field Dir)
if [ -z "$vulndb_resolved" ] || [ ! -d "$vulndb_dir/data/osv" ]; then
  echo "no data/osv in golang.org/x/vulndb@$vulndb_version:"; echo "$dl"; exit 1
fi
db="$cache/db-$vulndb_resolved"
if [ ! -f "$db/index/modules.json" ]; then
  go vet .ci/vulndb/main.go
  tmp=$(mktemp -d "$cache/build.XXXXXX")
  go run .ci/vulndb/main.go -osv "$vulndb_dir/data/osv" -out "$tmp"
  rm -rf "$db"
  mv -T "$tmp" "$db"
  # Keep only this version's database.
  find "$cache" -maxdepth 1 -name 'db-*' ! -name "db-$vulndb_resolved" -exec rm -rf {} +
fi

echo "govulncheck $govulncheck_version, golang.org/x/vulndb@$vulndb_resolved ($(ls "$db/ID" | wc -l) reports), $(go env GOVERSION)"
"$govulncheck" -db "file://$db" ./...
