#!/usr/bin/env bash
# restic sink: `nightjar run` (tree source → restic sink, raw bytes) against the stock
# `tar -c | restic backup --stdin` of the same folder, each into a fresh repository, in
# alternating runs. Reports the median times, their ratio (target <= 1.1) and nightjar's
# peak RSS. BENCH_RESTIC_MB sets the data size (default 1024), BENCH_RUNS the rounds (3).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PATH"
MB=${BENCH_RESTIC_MB:-1024}
RUNS=${BENCH_RUNS:-3}
nj="$PWD/bin/nightjar"
[ -x "$nj" ] || go build -o "$nj" ./cmd/nightjar
command -v restic >/dev/null || { echo "restic is missing: run make tools" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/nightjar-bench-restic.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data/logs"
# Generated data: half incompressible, half compressible text, as backups usually are.
half=$((MB / 2))
head -c "$((half << 20))" /dev/urandom > "$work/data/random.bin"
{ awk 'BEGIN { for (i = 1; ; i++) printf "%d 2026-11-22T02:00:13Z GET /api/v1/items?page=%d 200 %d\n", i, i * 7, i % 977 }' || true; } |
  head -c "$(((MB - half) << 20))" > "$work/data/logs/access.log"
echo "bench-password" > "$work/pw"

# A clean environment for restic, as nightjar gives it.
renv=(env -i PATH="$PATH" HOME="$work" TZ=UTC RESTIC_PASSWORD_FILE="$work/pw")

fresh_repo() { # $1: folder
  rm -rf "$1" "$work/cache"
  "${renv[@]}" RESTIC_REPOSITORY="$1" restic init >/dev/null
  sync # the last run's writes go out before the next is timed, not during it
}

cat > "$work/bench.yaml" <<YAML
version: 1
pipeline: bench
state_dir: $work/state
sources:
  - {name: data, type: tree, path: $work/data}
sinks:
  - {name: restic, type: restic, repository: $work/repo-nj, password_file: $work/pw, prune: never, cache_dir: $work/cache}
YAML

now() { date +%s.%N; }
exec {tick}<> <(:) # a pipe nobody writes to: `read -t` on it is a sleep without a fork
# nightjar's own peak RSS (VmHWM) is sampled, since wait4's figure would include restic's,
# in one more run after the timed ones. Even a sampler of bash builtins (reading
# /proc/PID/status 10 times a second) inside the timed runs gave ratios of 1.12-1.14, where
# the same runs without it gave 0.99-1.06 (2 cores, 3 sets each); one that forked awk and
# sleep cost 0.9 s of a 6 s run.
sampled_rss() {
  fresh_repo "$work/repo-nj"
  "${renv[@]}" "$nj" run -c "$work/bench.yaml" >/dev/null 2>"$work/nj.log" &
  local pid=$! hwm=0 key val
  while kill -0 "$pid" 2>/dev/null; do
    while read -r key val _; do
      if [ "$key" = VmHWM: ]; then [ "$val" -gt "$hwm" ] && hwm=$val; break; fi
    done <"/proc/$pid/status" 2>/dev/null || true
    read -r -t 0.1 -u "$tick" || true
  done
  wait "$pid" || { cat "$work/nj.log" >&2; exit 1; }
  echo "$hwm"
}
nj_times=() ; stock_times=()
for i in $(seq 1 "$RUNS"); do
  fresh_repo "$work/repo-nj" # state_dir stays, as between nightly runs
  t0=$(now)
  "${renv[@]}" "$nj" run -c "$work/bench.yaml" >/dev/null 2>"$work/nj.log" || { cat "$work/nj.log" >&2; exit 1; }
  t1=$(now)
  nj_times+=("$(echo "$t1 - $t0" | bc)")

  fresh_repo "$work/repo-stock"
  t0=$(now)
  tar --sort=name -C "$work/data" -cf - . |
    /usr/bin/time -f "%M" -o "$work/rss-stock" "${renv[@]}" RESTIC_REPOSITORY="$work/repo-stock" RESTIC_CACHE_DIR="$work/cache" \
      restic backup --stdin --stdin-filename bench/data.tar --quiet >/dev/null
  t1=$(now)
  stock_rss=$(tail -1 "$work/rss-stock")
  stock_times+=("$(echo "$t1 - $t0" | bc)")
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
nj_med=$(median "${nj_times[@]}")
stock_med=$(median "${stock_times[@]}")
rss_max=$(sampled_rss)
printf 'restic sink: %d MiB (half random, half text), %d runs, restic %s\n' "$MB" "$RUNS" "$(restic version | cut -d' ' -f2)"
printf '  nightjar run (tree -> restic sink)      median %6.2f s   (%s)\n' "$nj_med" "${nj_times[*]}"
printf '  tar | restic backup --stdin            median %6.2f s   (%s)\n' "$stock_med" "${stock_times[*]}"
printf '  ratio nightjar / stock                 %6.3f   (target <= 1.1)\n' "$(echo "$nj_med / $stock_med" | bc -l)"
printf '  peak RSS: nightjar %.1f MiB (its restic child not included), restic %.1f MiB\n' "$(echo "$rss_max / 1024" | bc -l)" "$(echo "$stock_rss / 1024" | bc -l)"
