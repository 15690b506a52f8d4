package main

import "testing"

func TestMemoryLimitFor(t *testing.T) {
	for _, tc := range []struct{ live, want int64 }{
		{0, memoryLimit},
		{40 << 20, memoryLimit},                     // the buffers of an ordinary run
		{memoryLimit - memoryHeadroom, memoryLimit}, // just fits
		{90 << 20, 90<<20 + memoryHeadroom},         // a large listing: room above it
	} {
		if got := memoryLimitFor(tc.live); got != tc.want {
			t.Errorf("live %d MiB: limit %d MiB, want %d MiB", tc.live>>20, got>>20, tc.want>>20)
		}
	}
}
