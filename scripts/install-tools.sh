#!/usr/bin/env bash
# Installs what the tests need: restic, age, zstd, sqlite3, protoc and systemd-analyze from Debian packages,
# and a MinIO server built with `go install` at a pinned version into .tools/bin (git-ignored).
# Idempotent: only what is missing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"

need=()
for pair in restic:restic age:age zstd:zstd sqlite3:sqlite3 protoc:protobuf-compiler systemd-analyze:systemd; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "install-tools: installing Debian packages: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p .tools/bin
if [ ! -x .tools/bin/minio ] || [ "$(cat .tools/minio.version 2>/dev/null)" != "$MINIO_VERSION" ]; then
  echo "install-tools: building MinIO $MINIO_VERSION (a few minutes on 2 cores)"
  GOBIN="$PWD/.tools/bin" GOFLAGS=-mod=mod go install "github.com/minio/minio@$MINIO_VERSION"
  echo "$MINIO_VERSION" > .tools/minio.version
fi
echo "install-tools: ok ($(restic version | cut -d' ' -f1-2), age $(age --version), $(.tools/bin/minio --version | head -1))"
