//go:build !linux

package retention

// Elsewhere a policy's memory is a Go slice (sliceMemory).
func mapMemory(uint64) ([]byte, bool) { return nil, false }

func unmapMemory([]byte) {}
