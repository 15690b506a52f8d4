package main

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// benchTree returns NIGHTJAR_BENCH_TREE (a folder, e.g. bench/out/tree/data-1024mb) or a
// generated 64 MiB mix of compressible text, random bytes and small files.
func benchTree(b *testing.B) (string, int64) {
	dir := os.Getenv("NIGHTJAR_BENCH_TREE")
	if dir == "" {
		dir = b.TempDir()
		text := []byte(strings.Repeat(`{"id":12345,"user":"user0042","msg":"request served in 12 ms"}`+"\n", 1<<14))
		rnd := make([]byte, 1<<20)
		for i := 0; i < 24; i++ {
			writeBench(b, filepath.Join(dir, "text", strconv.Itoa(i)), text)
			rand.Read(rnd)
			writeBench(b, filepath.Join(dir, "random", strconv.Itoa(i)), rnd)
		}
		for i := 0; i < 2000; i++ {
			writeBench(b, filepath.Join(dir, "small", strconv.Itoa(i/100), strconv.Itoa(i)), text[:8192])
		}
	}
	var total int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			total += info.Size()
		}
		return nil
	})
	return dir, total
}

func writeBench(b *testing.B, p string, body []byte) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, body, 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRunTree is the whole run, tree → zstd 3 → age → local, in-process (for pprof:
// go test ./cmd/nightjar -run X -bench RunTree -cpuprofile cpu.prof).
func BenchmarkRunTree(b *testing.B) {
	data, total := benchTree(b)
	f := newFixture(b, fixtureOpts{})
	f.data = data
	cfg, _ := os.ReadFile(f.config)
	cfg = []byte(strings.Replace(string(cfg), filepath.Join(f.dir, "data"), data, 1))
	os.WriteFile(f.config, cfg, 0o644)
	b.SetBytes(total)
	for b.Loop() {
		os.RemoveAll(f.backups)
		if r := nj(b, "run", "-q", "-c", f.config); r.code != 0 {
			b.Fatal(r)
		}
	}
}

// BenchmarkRestoreTree restores the snapshot that BenchmarkRunTree's setup makes.
func BenchmarkRestoreTree(b *testing.B) {
	data, total := benchTree(b)
	f := newFixture(b, fixtureOpts{})
	cfg, _ := os.ReadFile(f.config)
	cfg = []byte(strings.Replace(string(cfg), filepath.Join(f.dir, "data"), data, 1))
	os.WriteFile(f.config, cfg, 0o644)
	if r := nj(b, "run", "-q", "-c", f.config); r.code != 0 {
		b.Fatal(r)
	}
	b.SetBytes(total)
	for b.Loop() {
		to := filepath.Join(f.dir, "restore")
		os.RemoveAll(to)
		if r := nj(b, "restore", "-q", "-c", f.config, "--identity", f.key, "--to", to); r.code != 0 {
			b.Fatal(r)
		}
	}
}
