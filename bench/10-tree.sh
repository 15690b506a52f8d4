#!/usr/bin/env bash
# Tree → zstd 3 → age → local, against `tar -cf - DIR | zstd -3 -T0 | age -r R > out` on the
# same generated data, and restore against `age -d -i KEY | zstd -d | tar -x`.
#
# BENCH_SIZE_MB (default 1024) sets the data size: about 40% compressible JSON lines, 40%
# random bytes, 20% small files (8 KiB each). ROUNDS (default 3) timed runs of each side,
# alternating, after one untimed warm-up of each (page caches cannot be dropped here).
# BENCH_SHAPE=small generates only small files instead: 2 KiB each, half random, half JSON
# lines (BENCH_SIZE_MB=120 gives 61,440 files), where per-file costs decide.
# BENCH_SHAPE=onefile generates one file, like a database: 1 MiB of JSON lines and 1 MiB of
# random bytes in turn, so one file's read and the disk's flush decide.
# BENCH_SHAPE=sqlite generates a live WAL database (80%: rows of JSON text and a 768-byte
# random blob, like a cache with its embeddings) beside small files (20%): the database is
# stored as one committed state, the stock tar reads the file as it is.
# BENCH_DATA=DIR times an existing tree instead of the generated one (your own data).
# STOCK_SYNC=1 times the stock pipeline with an fsync of its output, as nightjar does.
# Prints the median times, the ratio nightjar / stock (below 1.0: nightjar is faster) and
# nightjar's peak RSS (from /usr/bin/time -v, else from getrusage via bench/rusage).
# The restored trees are kept until the last round (see next_restore): 2 x (ROUNDS + 1) + 1
# copies of the data on disk at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${BENCH_SIZE_MB:-1024}
rounds=${ROUNDS:-3}
nj=${NIGHTJAR_BIN:-$PWD/bin/nightjar} # NIGHTJAR_BIN: compare another build
out=$PWD/bench/out/tree
shape=${BENCH_SHAPE:-mixed}
case $shape in
  mixed) file_kb=8 data=${BENCH_DATA:-$out/data-${size_mb}mb} ;;
  small) file_kb=2 data=${BENCH_DATA:-$out/data-small-${size_mb}mb} ;;
  onefile) file_kb=8 data=${BENCH_DATA:-$out/data-onefile-${size_mb}mb} ;;
  sqlite) file_kb=8 data=${BENCH_DATA:-$out/data-sqlite-${size_mb}mb} ;;
  *) echo "BENCH_SHAPE=$shape: expected mixed, small, onefile or sqlite"; exit 1 ;;
esac
mkdir -p "$out"
rm -rf "$out"/restore.* # an interrupted run's
[ -x "$nj" ] || go build -o "$nj" ./cmd/nightjar
tools="tar zstd age"
[ "$shape" = sqlite ] && tools="$tools sqlite3"
for tool in $tools; do
  command -v $tool >/dev/null || { echo "missing tool: $tool (make tools)"; exit 1; }
done

# Peak RSS and wall time of one command: GNU time when present, else a tiny Go wrapper.
if [ -x /usr/bin/time ] && /usr/bin/time -f '%e' true 2>/dev/null; then
  timed() { /usr/bin/time -f '%e %M' -o "$out/time.txt" "$@" >/dev/null; }
else
  go build -o "$out/rusage" ./bench/rusage
  timed() { "$out/rusage" -o "$out/time.txt" "$@" >/dev/null; }
fi

generate() {
  local json_mb=$((size_mb * 4 / 10)) rand_mb=$((size_mb * 4 / 10)) small_mb=$((size_mb - size_mb * 8 / 10))
  local text=$data.tmp/json/events-000.jsonl
  if [ "$shape" = small ]; then # the JSON lines only feed the small files' text half
    json_mb=$(((size_mb + 1) / 2)) rand_mb=0 small_mb=$size_mb text=$data.tmp/json/events-*.jsonl
  elif [ "$shape" = onefile ]; then
    json_mb=$(((size_mb + 1) / 2)) rand_mb=$((size_mb / 2)) small_mb=0
  elif [ "$shape" = sqlite ]; then # the JSON lines only feed the small files' text half
    json_mb=$(((small_mb + 1) / 2)) rand_mb=0 text=$data.tmp/json/events-*.jsonl
  fi
  rm -rf "$data.tmp" && mkdir -p "$data.tmp/json" "$data.tmp/random" "$data.tmp/small"
  # Compressible: JSON log lines (zstd -3 gets about 4-6x), in 64 MiB files.
  awk -v total=$((json_mb * 1048576)) -v dir="$data.tmp/json" 'BEGIN {
    srand(42); n = 0; f = 0; out = sprintf("%s/events-%03d.jsonl", dir, f)
    while (n < total) {
      line = sprintf("{\"id\":%d,\"ts\":%d,\"user\":\"user%04d\",\"level\":\"%s\",\"msg\":\"request %x served in %d ms\",\"bytes\":%d}\n",
        n, 1763000000 + n / 100, int(rand() * 5000), (rand() < 0.9 ? "info" : "warn"), int(rand() * 2^31), int(rand() * 900), int(rand() * 65536))
      printf "%s", line > out; n += length(line)
      if (n >= (f + 1) * 67108864) { close(out); f++; out = sprintf("%s/events-%03d.jsonl", dir, f) }
    } }'
  # Incompressible: random bytes, in 128 MiB files.
  local left=$rand_mb i=0
  while [ $left -gt 0 ]; do
    local mb=$((left < 128 ? left : 128))
    head -c $((mb * 1048576)) /dev/urandom > "$data.tmp/random/blob-$i.bin"
    left=$((left - mb)); i=$((i + 1))
  done
  # Many small files: text and random, 8 KiB (small shape: 2 KiB) each, 1000 per folder.
  [ "$small_mb" -gt 0 ] && ( cd "$data.tmp/small"
    # shellcheck disable=SC2086 # $text is a glob for the small shape
    { head -c $((small_mb * 524288)) /dev/urandom; { cat $text || true; } | head -c $((small_mb * 524288)); } |
      split -b $((file_kb * 1024000)) -a 3 -d - chunk-
    for c in chunk-*; do
      mkdir "d${c#chunk-}" && split -b $((file_kb * 1024)) -a 3 -d "$c" "d${c#chunk-}/f" && rm "$c"
    done )
  if [ "$shape" = small ]; then rm -rf "$data.tmp/json" "$data.tmp/random"; fi
  if [ "$shape" = sqlite ]; then # about 2 KiB a row, with its index
    rm -rf "$data.tmp/json" "$data.tmp/random"
    sqlite3 "$data.tmp/cache.db" >/dev/null <<SQL
PRAGMA page_size=4096;
PRAGMA journal_mode=wal;
CREATE TABLE docs (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, title TEXT NOT NULL, body TEXT, emb BLOB);
CREATE INDEX docs_ts ON docs(ts);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $((size_mb * 8 / 10 * 512)))
INSERT INTO docs (ts, title, body, emb) SELECT abs(random()) % 1000000000, 'title number ' || i,
  printf('{"id":%d,"kind":"kind%d","text":"%s"}', i, i % 17, replace(hex(zeroblob(200)), '00', 'ab ')), randomblob(768) FROM n;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
  fi
  if [ "$shape" = onefile ]; then # 1 MiB of each in turn, into one file
    cat "$data.tmp"/json/* > "$data.tmp/json.all" && cat "$data.tmp"/random/* > "$data.tmp/random.all"
    for ((i = 0; i < size_mb; i++)); do
      dd if="$data.tmp/$([ $((i % 2)) = 0 ] && echo json || echo random).all" bs=1M skip=$((i / 2)) count=1 status=none
    done > "$data.tmp/db.bin"
    rm -rf "$data.tmp/json" "$data.tmp/random" "$data.tmp/small" "$data.tmp"/*.all
  fi
  mv "$data.tmp" "$data"
}
if [ -n "${BENCH_DATA:-}" ] && [ ! -d "$data" ]; then
  echo "BENCH_DATA=$data: not a directory"; exit 1
fi
if [ ! -d "$data" ]; then
  echo "generating ${size_mb} MiB of test data in $data"
  generate
fi
files=$(find "$data" -type f | wc -l)
bytes=$(du -sb "$data" | cut -f1)

rm -f "$out/key.txt" "$out/recipient.txt"
"$nj" keygen -o "$out/key.txt" --recipient-out "$out/recipient.txt" >/dev/null
recipient=$(cat "$out/recipient.txt")
cat > "$out/pipeline.yaml" <<EOF
version: 1
pipeline: bench
state_dir: $out/state
sources:
  - {name: data, type: tree, path: $data}
transforms:
  - {type: zstd, level: 3}
  - {type: age, recipients: ["$recipient"]}
sinks:
  - {name: local, type: local, path: $out/backups}
EOF

nj_run()    { rm -rf "$out/backups"; sync; timed "$nj" run -q -c "$out/pipeline.yaml"; }
# STOCK_SYNC=1 ends the stock pipeline with `sync FILE` (an fsync of its output): nightjar
# fsyncs what it stores before it calls a snapshot committed, the plain pipeline leaves its
# output in the page cache, so on disk-bound data it is timed without the disk's writes.
stock_sync=${STOCK_SYNC:+" && sync '$out/stock.tar.zst.age'"}
stock_run() { rm -f "$out/stock.tar.zst.age"; sync; timed sh -c "tar -cf - -C '$data' . | zstd -3 -T0 -q | age -r '$recipient' > '$out/stock.tar.zst.age'$stock_sync"; }
# Each restore goes into a folder of its own, and the restored trees are deleted only after
# the last round. Deleting one right before the next run made that run's time the kernel's:
# on ext4 without a journal (this machine's /work), every new file's inode allocation scans
# past all inodes of its block group freed less than vm.dirty_expire_centisecs (30 s here)
# ago, 0.5-0.8 ms a file (perf: recently_deleted in ext4_create), whichever tool creates it. The sync keeps the previous run's writeback out of the next run.
restores=0
next_restore() { restores=$((restores + 1)); dest=$out/restore.$restores; rm -rf "$dest"; sync; }
nj_restore()    { next_restore; timed "$nj" restore -q -c "$out/pipeline.yaml" --identity "$out/key.txt" --to "$dest"; }
stock_restore() { next_restore; mkdir -p "$dest"; timed sh -c "age -d -i '$out/key.txt' '$out/stock.tar.zst.age' | zstd -d -q | tar -x -C '$dest'"; }

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# compare NAME NJFUNC STOCKFUNC: warm-up, then alternating timed rounds.
compare() {
  local name=$1 njf=$2 stf=$3 njt=() stt=() rss=0
  $njf; $stf
  for ((r = 1; r <= rounds; r++)); do
    $njf; read -r t m < "$out/time.txt"; njt+=("$t"); [ "$m" -gt "$rss" ] && rss=$m
    $stf; read -r t _ < "$out/time.txt"; stt+=("$t")
    echo "  $name round $r: nightjar ${njt[-1]}s  stock ${stt[-1]}s" >&2
  done
  local a b
  a=$(printf '%s\n' "${njt[@]}" | median)
  b=$(printf '%s\n' "${stt[@]}" | median)
  awk -v n="$name" -v a="$a" -v b="$b" -v rss="$rss" -v bytes="$bytes" 'BEGIN {
    printf "| %-7s | %7.2f s (%4.0f MB/s) | %7.2f s (%4.0f MB/s) | %5.2f | %6.1f MiB |\n",
      n, a, bytes / a / 1e6, b, bytes / b / 1e6, a / b, rss / 1024 }'
}

kind="40% JSON lines, 40% random, 20% 8 KiB files"
[ "$shape" = small ] && kind="2 KiB files, half random, half JSON lines"
[ "$shape" = onefile ] && kind="one file, 1 MiB of JSON lines and 1 MiB of random bytes in turn"
[ "$shape" = sqlite ] && kind="a WAL database of JSON text and random blobs, 20% 8 KiB files"
[ -n "${BENCH_DATA:-}" ] && kind=$BENCH_DATA
echo "data: $((bytes / 1048576)) MiB in $files files ($kind); $rounds alternating rounds, medians${STOCK_SYNC:+; the stock pipeline fsyncs its output}"
echo
echo "| step    | nightjar             | stock                | ratio | nightjar peak RSS |"
echo "|---------|----------------------|----------------------|-------|-------------------|"
compare backup nj_run stock_run
compare restore nj_restore stock_restore
stored=$(find "$out/backups" -name '*.age' -printf '%s\n' | head -1)
echo
echo "stored: nightjar $((stored / 1048576)) MiB, stock $(( $(stat -c %s "$out/stock.tar.zst.age") / 1048576 )) MiB"
nj_restore
# nightjar leaves a database's -wal, -shm and -journal files out (a read-only open of a WAL
# database creates the first two): in a tree that may hold databases they are not compared.
diff_x=()
if [ "$shape" = sqlite ] || [ -n "${BENCH_DATA:-}" ]; then diff_x=(-x '*-wal' -x '*-shm' -x '*-journal'); fi
# --no-dereference: a symbolic link is compared as a link (its target may be absolute,
# dangling, or a loop like /usr/bin/X11 -> .), as tar and nightjar store it.
if diff -r --no-dereference "${diff_x[@]}" "$data" "$dest/data" >/dev/null; then
  echo "nightjar's restored tree equals the data (diff -r --no-dereference${diff_x[*]:+, without -wal, -shm and -journal files})"
else echo "RESTORED TREE DIFFERS"; exit 1; fi
rm -rf "$out"/restore.* "$out/backups" "$out/stock.tar.zst.age"
