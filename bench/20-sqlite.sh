#!/usr/bin/env bash
# SQLite copy step: nightjar's consistent copy (`method: backup`: the page copy, or the online
# backup API where that cannot vouch for the copy; and VACUUM INTO) against the stock sqlite3
# CLI's `.backup` and `VACUUM INTO` on the same quiet generated database, in alternating
# runs; median seconds and peak RSS. The integrity check of the copy is timed separately
# (nightjar's PRAGMA integrity_check against sqlite3's).
# Then the whole sqlite source end to end (nightjar run: copy, check, zstd, age, local)
# against the stock tools doing the same steps.
# Then, with a writer committing continuously, once each: nightjar's copy against
# `sqlite3 .backup`, which restarts on every commit (BENCH_SQLITE_LOAD=0 skips this).
# BENCH_SQLITE_MB: database size (default 1024). BENCH_RUNS: runs per tool (default 5).
# BENCH_SQLITE_LOAD_TIMEOUT: how long `sqlite3 .backup` may try under load (default 60 s).
# Target: nightjar's backup copy within 1.2x of `sqlite3 .backup`.
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${BENCH_SQLITE_MB:-1024}
runs=${BENCH_RUNS:-5}
work=$(mktemp -d "${TMPDIR:-/tmp}/nightjar-bench-sqlite.XXXXXX")
trap 'rm -rf "$work"' EXIT
command -v sqlite3 >/dev/null || { echo "sqlite3 is missing: run make tools" >&2; exit 1; }

go build -o "$work/sqlitecopy" ./bench/sqlitecopy
db="$work/bench.db"
rows=$((mb * 1024))
echo "generating a ${mb} MiB WAL database ($rows rows of ~1 KiB, one index)..."
sqlite3 "$db" >/dev/null <<SQL
PRAGMA page_size=4096;
PRAGMA journal_mode=wal;
CREATE TABLE events (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL, body BLOB);
CREATE INDEX events_ts ON events(ts);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
INSERT INTO events (ts, kind, body) SELECT abs(random()) % 1000000000, 'kind' || (i % 17), randomblob(900) FROM n;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
size=$(stat -c %s "$db")
echo "database: $((size / 1048576)) MiB, $(sqlite3 "$db" 'PRAGMA page_count') pages"

# timed CMD...: runs CMD under /usr/bin/time; prints "seconds maxrss_kib"; stdout of CMD
# goes to $work/out.
timed() {
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out"
  cat "$work/time"
}

declare -a stock_bk nj_bk stock_vac nj_vac stock_chk nj_chk rss_stock rss_nj
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

stock_backup() { rm -f "$work/copy.db"*; set -- $(timed sqlite3 "$db" ".backup '$work/copy.db'"); stock_bk+=("$1"); rss_stock+=("$2"); }
nj_backup() {
  rm -rf "$work/scratch"; mkdir -p "$work/scratch"
  set -- $(timed "$work/sqlitecopy" -db "$db" -method backup -integrity off -scratch "$work/scratch")
  nj_bk+=("$(sed -n 's/.*copy_seconds=\([0-9.]*\).*/\1/p' "$work/out")"); rss_nj+=("$2")
  nj_mode=$(sed -n 's/.*copy_mode=\([a-z_]*\).*/\1/p' "$work/out")
}
stock_vacuum() { rm -f "$work/vac.db"*; set -- $(timed sqlite3 "$db" "VACUUM INTO '$work/vac.db'"); stock_vac+=("$1"); }
nj_vacuum() {
  rm -rf "$work/scratch"; mkdir -p "$work/scratch"
  timed "$work/sqlitecopy" -db "$db" -method vacuum -integrity off -scratch "$work/scratch" >/dev/null
  nj_vac+=("$(sed -n 's/.*copy_seconds=\([0-9.]*\).*/\1/p' "$work/out")")
}
stock_check() { set -- $(timed sqlite3 "$work/copy.db" "PRAGMA integrity_check"); stock_chk+=("$1"); }
nj_check() {
  rm -rf "$work/scratch"; mkdir -p "$work/scratch"
  timed "$work/sqlitecopy" -db "$db" -method backup -integrity full -scratch "$work/scratch" >/dev/null
  nj_chk+=("$(sed -n 's/.*integrity_seconds=\([0-9.]*\).*/\1/p' "$work/out")")
}

for i in $(seq 1 "$runs"); do
  if (( i % 2 )); then
    stock_backup; nj_backup; stock_vacuum; nj_vacuum
  else
    nj_backup; stock_backup; nj_vacuum; stock_vacuum
  fi
done
stock_backup # leaves a copy for the stock check
for i in $(seq 1 "$runs"); do
  if (( i % 2 )); then stock_check; nj_check; else nj_check; stock_check; fi
done

sb=$(median "${stock_bk[@]}"); nb=$(median "${nj_bk[@]}")
sv=$(median "${stock_vac[@]}"); nv=$(median "${nj_vac[@]}")
sc=$(median "${stock_chk[@]}"); nc=$(median "${nj_chk[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
rate() { awk -v s="$size" -v t="$1" 'BEGIN { if (t > 0) printf "%.0f MiB/s", s / 1048576 / t; else print "n/a" }'; }
echo
echo "SQLite copy step, ${mb} MiB database, quiet, median of $runs alternating runs (seconds):"
echo
echo "| step | nightjar | stock | ratio (nightjar/stock) |"
echo "|---|---|---|---|"
echo "| copy: \`method: backup\` (copy_mode $nj_mode) vs \`sqlite3 .backup\` | $nb ($(rate "$nb")) | $sb ($(rate "$sb")) | $(ratio "$nb" "$sb") |"
echo "| copy: VACUUM INTO vs \`sqlite3 'VACUUM INTO'\` | $nv | $sv | $(ratio "$nv" "$sv") |"
echo "| integrity_check of the copy vs \`sqlite3 'PRAGMA integrity_check'\` | $nc | $sc | $(ratio "$nc" "$sc") |"
echo
echo "peak RSS (KiB, median): nightjar copy $(median "${rss_nj[@]}"), sqlite3 .backup $(median "${rss_stock[@]}")"
ok=$(awk -v a="$nb" -v b="$sb" 'BEGIN { print (a <= 1.2 * b) ? "met" : "MISSED" }')
echo "target (nightjar backup copy within 1.2x of sqlite3 .backup): $ok"

# The whole sqlite source, end to end: `nightjar run` (copy, integrity_check, zstd 3, age,
# local sink) against the same steps by the stock tools: sqlite3 .backup, sqlite3 PRAGMA
# integrity_check, zstd -3 -T0 | age. A sync before each run, as in bench/10-tree.sh.
nj=${NIGHTJAR_BIN:-$PWD/bin/nightjar} # NIGHTJAR_BIN: compare another build
[ -x "$nj" ] || make -s build
"$nj" keygen -o "$work/key.txt" --recipient-out "$work/recipient.txt" >/dev/null
recipient=$(cat "$work/recipient.txt")
cat > "$work/e2e.yaml" <<YAML
version: 1
pipeline: bench
state_dir: $work/state
sources:
  - {name: db, type: sqlite, path: $db}
transforms:
  - {type: zstd, level: 3}
  - {type: age, recipients: ["$recipient"]}
sinks:
  - {name: local, type: local, path: $work/backups}
YAML
declare -a nj_e2e stock_e2e rss_e2e
nj_run() {
  rm -rf "$work/backups" "$work/state"; sync
  set -- $(TMPDIR="$work" timed "$nj" run -q -c "$work/e2e.yaml"); nj_e2e+=("$1"); rss_e2e+=("$2")
}
stock_run() {
  rm -f "$work/copy.db"* "$work/stock.zst.age"; sync
  set -- $(timed sh -c "sqlite3 '$db' \".backup '$work/copy.db'\" && test \"\$(sqlite3 '$work/copy.db' 'PRAGMA integrity_check')\" = ok && zstd -3 -T0 -q -c '$work/copy.db' | age -r '$recipient' > '$work/stock.zst.age'")
  stock_e2e+=("$1")
}
for i in $(seq 1 "$runs"); do
  if (( i % 2 )); then stock_run; nj_run; else nj_run; stock_run; fi
done
ne=$(median "${nj_e2e[@]}"); se=$(median "${stock_e2e[@]}")
echo
echo "End to end, the same database, median of $runs alternating runs (seconds):"
echo
echo "| step | nightjar | stock | ratio (nightjar/stock) | nightjar peak RSS (KiB) |"
echo "|---|---|---|---|---|"
echo "| sqlite source → zstd 3 → age → local vs \`sqlite3 .backup\`, \`PRAGMA integrity_check\`, \`zstd -3 -T0 \| age\` | $ne | $se | $(ratio "$ne" "$se") | $(median "${rss_e2e[@]}") |"

[ "${BENCH_SQLITE_LOAD:-1}" = 1 ] || exit 0
# Under load: one sqlite3 process commits small transactions back to back (autocommit).
limit=${BENCH_SQLITE_LOAD_TIMEOUT:-60}
before=$(sqlite3 "$db" "SELECT count(*) FROM events")
{ echo ".timeout 30000"; yes "INSERT INTO events (ts, kind, body) VALUES (1, 'w', randomblob(200));"; } \
  | sqlite3 "$db" >/dev/null 2>&1 &
writer=$!
sleep 1
rm -rf "$work/scratch"; mkdir -p "$work/scratch"
timed "$work/sqlitecopy" -db "$db" -method backup -integrity full -scratch "$work/scratch" >/dev/null
nl=$(sed -n 's/.*copy_seconds=\([0-9.]*\).*/\1/p' "$work/out")
nli=$(sed -n 's/.*integrity_seconds=\([0-9.]*\).*/\1/p' "$work/out")
nj_mode=$(sed -n 's/.*copy_mode=\([a-z_]*\).*/\1/p' "$work/out")
rm -f "$work/copy.db"*
t0=$(date +%s.%N)
rc=0
timeout "$limit" sqlite3 "$db" ".backup '$work/copy.db'" 2>"$work/err" || rc=$?
case $rc in
  0) sl=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }') ;;
  124) sl="did not finish in ${limit} s" ;;
  *) sl="failed (exit $rc: $(head -c 200 "$work/err"))" ;;
esac
kill "$writer" 2>/dev/null || true
wait "$writer" 2>/dev/null || true
after=$(sqlite3 "$db" "SELECT count(*) FROM events")
echo
echo "Under load (a writer committed $((after - before)) transactions meanwhile), one run each:"
echo
echo "| step | nightjar | stock |"
echo "|---|---|---|"
echo "| copy: \`method: backup\` (copy_mode $nj_mode) vs \`sqlite3 .backup\` | $nl (integrity_check $nli) | $sl |"
