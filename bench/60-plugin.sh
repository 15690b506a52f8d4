#!/usr/bin/env bash
# External sink plugin throughput: the same tree (BENCH_SIZE_MB of random data, no
# transforms, so the sink path dominates) backed up to the built-in local sink and to the
# example plugin nightjar-sink-folder (a separate process: gRPC over a Unix socket with mTLS
# for the calls, the data through the shared-memory ring, CRC32C-verified Put), in
# alternating runs. Reports each run's time, the median throughput of both and their
# ratio (plugin / local; the target is >= 0.8), and nightjar's peak RSS.
#
# The default is 1 GiB, as in the other benchmarks. It was 256 MiB, where the plugin's
# start (about 20 ms: a process, its TLS handshake, Describe and Configure) was a tenth of
# a run and the runs (0.20-0.30 s) were timed to 10 ms: ratios of 0.69-0.86 on one
# machine, against 0.90 for 1 GiB. BENCH_SIZE_MB=256 still measures the small case.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${BENCH_SIZE_MB:-1024}"
RUNS="${BENCH_RUNS:-3}"
[ -x bin/nightjar ] && [ -x bin/nightjar-sink-folder ] || make -s build
work=$(mktemp -d "${TMPDIR:-/tmp}/nightjar-bench-plugin.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom > "$work/src/data.bin"

for kind in local plugin; do
  if [ "$kind" = local ]; then sink="{name: out, type: local, path: $work/out-$kind}"
  else sink="{name: out, type: folder, root: $work/out-$kind}"; fi
  cat > "$work/$kind.yaml" <<YAML
version: 1
pipeline: bench
state_dir: $work/state-$kind
sources:
  - {name: data, type: tree, path: $work/src}
sinks:
  - $sink
plugins: {dir: $PWD/bin}
YAML
done

# one KIND: runs nightjar once, prints "seconds maxrss_kb" (the time to the nanosecond:
# GNU time's %e has 10 ms steps). The sync keeps the previous run's output, still being
# written back, from slowing whichever run comes next.
one() {
  rm -rf "$work/out-$1"
  sync
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/time" bin/nightjar run -q -c "$work/$1.yaml" >/dev/null
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" -v m="$(tail -1 "$work/time")" 'BEGIN { printf "%.3f %d\n", b - a, m }'
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: > "$work/local.t"; : > "$work/plugin.t"; : > "$work/rss"
for i in $(seq 1 "$RUNS"); do
  for kind in local plugin; do
    read -r secs rss < <(one "$kind")
    echo "$secs" >> "$work/$kind.t"
    echo "$kind $rss" >> "$work/rss"
    echo "run $i $kind: ${secs}s, nightjar peak RSS ${rss} KiB"
  done
done
tl=$(median < "$work/local.t"); tp=$(median < "$work/plugin.t")
rl=$(awk '$1=="local"{print $2}' "$work/rss" | sort -n | tail -1)
rp=$(awk '$1=="plugin"{print $2}' "$work/rss" | sort -n | tail -1)
awk -v s="$SIZE_MB" -v tl="$tl" -v tp="$tp" -v rl="$rl" -v rp="$rp" 'BEGIN {
  printf "data: %d MiB random, no transforms, median of runs\n", s
  printf "built-in local sink:      %6.2fs  %7.1f MiB/s  peak RSS %d MiB\n", tl, s/tl, rl/1024
  printf "plugin (folder example):  %6.2fs  %7.1f MiB/s  peak RSS %d MiB (nightjar only)\n", tp, s/tp, rp/1024
  printf "throughput ratio plugin/local: %.2f (target >= 0.8)\n", tl/tp
}'
