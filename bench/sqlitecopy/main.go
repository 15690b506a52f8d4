// Command sqlitecopy times nightjar's SQLite copy step for bench/20-sqlite.sh: it runs the
// sqlite source's Snapshot into io.Discard and prints the copy step's and the integrity
// check's durations as the source measured them (manifest meta copy_seconds and
// integrity_seconds), plus the whole Snapshot.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/nightjar-backup/nightjar/plugins/source/sqlite"
)

func main() {
	db := flag.String("db", "", "database to copy")
	method := flag.String("method", "backup", "backup or vacuum")
	integrity := flag.String("integrity", "off", "full, quick or off")
	scratch := flag.String("scratch", os.TempDir(), "scratch folder")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	src, err := sqlite.New("bench.db", *db, sqlite.Options{
		Method: sqlite.Method(*method), Integrity: sqlite.Level(*integrity), ScratchDir: *scratch})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	start := time.Now()
	meta, err := src.Snapshot(context.Background(), io.Discard)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	fmt.Printf("copy_seconds=%s integrity_seconds=%s total_seconds=%.3f copy_mode=%s\n",
		meta["copy_seconds"], meta["integrity_seconds"], time.Since(start).Seconds(), meta["copy_mode"])
}
