#!/usr/bin/env bash
# Build the static binary and the image, and start the three-centre compose
# federation. From a clean checkout:  bash deploy/up.sh
# Stop and delete it (volumes too):  docker-compose -p helpmesh -f deploy/compose.yml down -v
set -euo pipefail
cd "$(dirname "$0")/.."
# The binary is built with go.mod's toolchain (a Go with the security fixes);
# the installed Go's default, GOTOOLCHAIN=local, would ignore that line.
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o deploy/build/helpmesh ./cmd/helpmesh
mkdir -p deploy/build/rootfs/data deploy/build/rootfs/shared
docker build -q -t helpmesh:dev -f deploy/Dockerfile deploy
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=(docker-compose)
fi
"${compose[@]}" -p helpmesh -f deploy/compose.yml up -d "$@"
echo "centres: http://127.0.0.1:8081 (centre-a)  :8082 (centre-b)  :8083 (centre-c)"
echo "admin token: docker cp helpmesh_centre-a_1:/shared/first-admin.token - | tar -xO"
