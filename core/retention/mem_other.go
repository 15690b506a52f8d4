//go:build !unix

package retention

import "github.com/tetratelabs/wazero/experimental"

func newMemAllocator(limitBytes uint64) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(_, max uint64) experimental.LinearMemory {
		if max == 0 || max > limitBytes {
			max = limitBytes
		}
		return &sliceMemory{max: max}
	})
}
