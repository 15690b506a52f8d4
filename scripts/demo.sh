#!/usr/bin/env bash
# The demo: make sample data, back it up with configs/demo.yaml to a local folder, list it,
# verify it, restore it and compare with the original. Needs only Go (nightjar is built first).
set -euo pipefail
cd "$(dirname "$0")/.."
nj=bin/nightjar
rm -rf demo/data demo/restore
mkdir -p demo/data/docs/empty demo/data/photos "demo/data/ünïcødé names"
echo "hello from nightjar" > demo/data/docs/readme.txt
head -c 3000000 /dev/urandom > demo/data/photos/random.bin
seq 1 200000 > demo/data/docs/numbers.txt
echo "a file with an odd name" > "demo/data/ünïcødé names/fïlé with spaces.txt"
ln -sf ../docs/readme.txt demo/data/photos/readme-link
chmod 0600 demo/data/docs/readme.txt
echo "skipped by the exclude" > demo/data/scratch.tmp
[ -f demo/key.txt ] || $nj keygen -o demo/key.txt --recipient-out demo/recipients.txt >/dev/null

echo "== nightjar run"
$nj run -c configs/demo.yaml
echo "== nightjar snapshots"
$nj snapshots -c configs/demo.yaml
echo "== nightjar verify --identity"
$nj verify -c configs/demo.yaml --identity demo/key.txt
echo "== nightjar restore"
$nj restore -c configs/demo.yaml --identity demo/key.txt --to demo/restore
rm demo/data/scratch.tmp
diff -r demo/data demo/restore/data
echo "== restored tree equals the source (diff -r): ok"
