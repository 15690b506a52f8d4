package main

import "testing"

func TestMemoryLimitFor(t *testing.T) {
	for _, tc := range []struct{ live, want int64 }{
		{0, memoryLimit},
		{30 << 20, memoryLimit},                     // the buffers of a restore
		{memoryLimit - memoryHeadroom, memoryLimit}, // just fits
		{48 << 20, 48<<20 + memoryHeadroom},         // a tree backup's buffers: room above them
		{90 << 20, 90<<20 + memoryHeadroom},         // a large listing: room above it
	} {
		if got := memoryLimitFor(tc.live); got != tc.want {
			t.Errorf("live %d MiB: limit %d MiB, want %d MiB", tc.live>>20, got>>20, tc.want>>20)
		}
	}
}
