#!/usr/bin/env bash
# S3 sink: upload throughput to a local MinIO through nightjar's S3 store against a bare
# minio-go PutObject of the same stream (both with 16 MiB parts, size unknown as from a
# pipe), alternating runs, median of BENCH_RUNS; and each one's peak RSS. minio-go without a
# PartSize is shown too: it is why the store always sets one.
# BENCH_S3_MB sets the upload size (default 1024).
set -euo pipefail
cd "$(dirname "$0")/.."
MB="${BENCH_S3_MB:-1024}"
RUNS="${BENCH_RUNS:-3}"
MINIO=.tools/bin/minio
[ -x "$MINIO" ] || { echo "30-s3: $MINIO is missing: run make tools" >&2; exit 1; }

work=$(mktemp -d)
mpid=""
cleanup() { [ -n "$mpid" ] && kill "$mpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); console=$(free_port)
export S3PUT_ACCESS_KEY=nightjar-bench S3PUT_SECRET_KEY=nightjar-bench-secret
env -i PATH="$PATH" HOME="$work" MINIO_ROOT_USER=$S3PUT_ACCESS_KEY MINIO_ROOT_PASSWORD=$S3PUT_SECRET_KEY \
  MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=1 \
  "$MINIO" server "$work/data" --quiet --address "127.0.0.1:$port" --console-address "127.0.0.1:$console" \
  >"$work/minio.log" 2>&1 &
mpid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/minio/health/ready" >/dev/null 2>&1 && break
  sleep 0.2
done

go build -o "$work/s3put" ./bench/s3put
"$work/s3put" -endpoint "127.0.0.1:$port" -bucket bench -make-bucket

declare -A secs rss
for i in $(seq "$RUNS"); do
  for mode in nightjar minio-go; do
    out=$("$work/s3put" -endpoint "127.0.0.1:$port" -bucket bench -mode "$mode" -mb "$MB")
    secs[$mode]+="$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])') "
    rss[$mode]+="$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["max_rss_kib"])') "
  done
done
out=$("$work/s3put" -endpoint "127.0.0.1:$port" -bucket bench -mode minio-go-default -mb "$MB")
rss[minio-go-default]=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["max_rss_kib"])')
secs[minio-go-default]=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')

python3 - "$MB" "${secs[nightjar]}" "${secs[minio-go]}" "${rss[nightjar]}" "${rss[minio-go]}" \
  "${secs[minio-go-default]}" "${rss[minio-go-default]}" <<'EOF'
import statistics, sys
mb = int(sys.argv[1])
nj, mg = [list(map(float, a.split())) for a in sys.argv[2:4]]
njr, mgr = [max(map(int, a.split())) for a in sys.argv[4:6]]
ds, dr = float(sys.argv[6]), int(sys.argv[7])
mn, mm = statistics.median(nj), statistics.median(mg)
print(f"S3 upload of {mb} MiB to a local MinIO, stream of unknown size, median of {len(nj)} alternating runs:")
print(f"  nightjar S3 store (16 MiB parts):     {mb/mn:8.1f} MiB/s  peak RSS {njr/1024:7.1f} MiB")
print(f"  bare minio-go PutObject (16 MiB parts): {mb/mm:6.1f} MiB/s  peak RSS {mgr/1024:7.1f} MiB")
print(f"  bare minio-go PutObject (no PartSize):  {mb/ds:6.1f} MiB/s  peak RSS {dr/1024:7.1f} MiB  (one run)")
print(f"  throughput ratio nightjar / minio-go: {mm/mn:.2f}x (target >= 0.9x)")
EOF
