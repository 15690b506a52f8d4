#!/usr/bin/env bash
# Runs every benchmark script in bench/ (each compares nightjar with the stock tool doing the
# same work on the same generated data) and collects their reports in bench/out/report.md.
# BENCH_SIZE_MB sets the data size where a script takes one.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
: > bench/out/report.md
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(go version | cut -d' ' -f3), $(uname -r)" | tee -a bench/out/report.md
for s in bench/[0-9]*.sh; do
  [ -e "$s" ] || continue
  echo "== $s" | tee -a bench/out/report.md
  bash "$s" 2>&1 | tee -a bench/out/report.md
  if [ "$s" = bench/10-tree.sh ]; then # and the many-small-files tree (61,440 files of 2 KiB)
    echo "== $s, BENCH_SHAPE=small" | tee -a bench/out/report.md
    BENCH_SHAPE=small BENCH_SIZE_MB=120 bash "$s" 2>&1 | tee -a bench/out/report.md
    echo "== $s, BENCH_SHAPE=onefile" | tee -a bench/out/report.md # one file, like a database
    BENCH_SHAPE=onefile bash "$s" 2>&1 | tee -a bench/out/report.md
    echo "== $s, BENCH_SHAPE=sqlite" | tee -a bench/out/report.md # a live database and small files
    BENCH_SHAPE=sqlite bash "$s" 2>&1 | tee -a bench/out/report.md
  fi
done
echo "report: bench/out/report.md"
