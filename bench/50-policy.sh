#!/usr/bin/env bash
# Retention policy: the built-in gfs (WASM, wazero) on 10,000 snapshots, cold (compile),
# warm (compiled module from the on-disk cache, new instance) and evaluate-only, against a
# native Go run of the same code (decode, decide, encode). Then the CLI end to end:
# `nightjar policy test gfs` on 10,000 snapshots, with its peak RSS.
# BENCH_POLICY_RUNS sets the iterations per Go benchmark (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${BENCH_POLICY_RUNS:-5}"
out=bench/out/policy
mkdir -p "$out"

go test -run '^$' -bench 'GFS' -benchtime "${runs}x" -benchmem ./plugins/policy/gfs/ | tee "$out/go-bench.txt"

awk '/^BenchmarkGFS/ { name=$1; sub(/-[0-9]+$/, "", name); sub(/BenchmarkGFS/, "", name); ms[name]=$3/1e6 }
END {
  printf "\n| gfs, 10,000 snapshots | ms/op | x native |\n|---|---:|---:|\n"
  n = split("Native WasmEvaluate WasmWarm WasmCold", order, " ")
  for (i = 1; i <= n; i++) { k = order[i]; if (k in ms) printf "| %s | %.1f | %.1f |\n", k, ms[k], ms[k]/ms["Native"] }
}' "$out/go-bench.txt" | tee "$out/table.md"

# CLI end to end (includes process start and the JSON round trip), warm cache.
make -s build
python3 - "$out/snaps.json" <<'PY'
import json, sys, datetime
end = datetime.datetime(2026, 11, 22, 2, 0, 0, tzinfo=datetime.timezone.utc)
snaps = []
for i in range(10000):
    t = end - datetime.timedelta(hours=12 * i)
    snaps.append({"id": t.strftime("%Y%m%dT%H%M%SZ") + "-%06x" % i, "time": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "size": 1 << 30})
json.dump(snaps, open(sys.argv[1], "w"))
PY
params='{"keep_last":3,"keep_daily":14,"keep_weekly":8,"keep_monthly":24,"keep_yearly":-1,"keep_within":"2d"}'
./bin/nightjar policy test gfs --snapshots "$out/snaps.json" --params "$params" --now 2026-11-22T03:00:00Z > /dev/null # warm the cache
for i in 1 2 3; do
  /usr/bin/time -f "cli policy test gfs, 10,000 snapshots, warm: %e s wall, %U s user + %S s sys CPU, %M KiB peak RSS" \
    ./bin/nightjar policy test gfs --snapshots "$out/snaps.json" --params "$params" --now 2026-11-22T03:00:00Z > "$out/cli-out.json"
done 2>&1 | tee "$out/cli.txt"
python3 -c "import json,sys; d=json.load(open('$out/cli-out.json'))['decisions']; print('decisions:', len(d), 'kept:', sum(x['keep'] for x in d))"
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg)"
