package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The Go heap's soft limit keeps the peak RSS flat: every buffer of a run is bounded, but
// the collector would otherwise let the heap grow to twice the live data. A soft limit
// close above the live heap is a trap, though: the collector then runs back to back,
// each time freeing almost nothing. Measured on a folder of 400,000 files, whose listing
// then took 36 MB of heap next to the run's buffers, under a fixed 96 MiB limit: 795
// collections and 16.5 s for a backup `tar | zstd` makes in 5.5 s.
// So the limit follows the live heap when that comes within memoryHeadroom of it: memory
// grows with the largest folder's listing (never with the data's size), time does not.
//
// The floor was 96 MiB. A tree backup's live heap is 42-49 MB at zstd level 3 (its chunks
// are 32 MiB of it), so the collector let the heap reach 83 MB before it ran, and the peak
// RSS came to 105-117 MiB on a copy of /usr and GOROOT (1 GiB, 58,933 files), close under
// the 128 MiB target. With a floor of 64 MiB the limit is live+24 MiB there: 9 collections
// a run instead of 6 (20 ms of CPU instead of 7, in 6.5 s), peak RSS 86-98 MiB (the
// higher with the binary's pages as the linker wrote them), time within the runs' spread
// (docs/benchmarks.md, "Night of 2026-12-08, later").
const (
	memoryLimit    = 64 << 20 // the soft limit for the buffers and an ordinary listing
	memoryHeadroom = 24 << 20 // the least room above the live heap
	memoryEvery    = 50 * time.Millisecond
)

// memoryLimitFor returns the soft limit for a live heap of live bytes.
func memoryLimitFor(live int64) int64 {
	return max(memoryLimit, live+memoryHeadroom)
}

// followLiveHeap sets the soft limit and keeps it memoryHeadroom above the live heap
// (as the last collection measured it) until ctx ends.
func followLiveHeap(ctx context.Context) {
	debug.SetMemoryLimit(memoryLimit)
	go func() {
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		limit := int64(memoryLimit)
		t := time.NewTicker(memoryEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return // not measured by this Go runtime: keep the fixed limit
			}
			if l := memoryLimitFor(int64(sample[0].Value.Uint64())); l != limit {
				limit = l
				debug.SetMemoryLimit(limit)
			}
		}
	}()
}
