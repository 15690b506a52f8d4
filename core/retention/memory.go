package retention

import "github.com/tetratelabs/wazero/experimental"

// arena backs the linear memory of one evaluation. Where the system allows (memory_linux.go)
// it maps the whole limit as untouched virtual memory, so instantiation neither clears the
// limit nor copies on a grow, and the module's pages are faulted in only as it touches them
// (gfs on 10,000 snapshots touches 10 of its 64 MiB). A Go slice of the limit (what
// wazero allocates when asked to reserve the limit up front, as this package did before)
// is cleared in full when the Go heap reuses memory for it: 25 ms per evaluation, and
// 150 ms or more where the clear also faults the pages back in.
//
// The mappings belong to the evaluation, not to wazero: Free does nothing, and release,
// called once the run has returned and its module is closed, unmaps them. Nothing can then
// still be running on them.
type arena struct {
	maps [][]byte
}

func (a *arena) Allocate(_, max uint64) experimental.LinearMemory {
	if b, ok := mapMemory(max); ok {
		a.maps = append(a.maps, b)
		return &mapped{b: b}
	}
	return &sliceMemory{max: max}
}

func (a *arena) release() {
	for _, b := range a.maps {
		unmapMemory(b)
	}
	a.maps = nil
}

// mapped is a linear memory inside one mapping of its maximum size: growing it only
// lengthens the slice.
type mapped struct{ b []byte }

func (m *mapped) Reallocate(size uint64) []byte {
	if size > uint64(len(m.b)) {
		return nil // over the limit: memory.grow fails in the module
	}
	return m.b[:size:size]
}

func (m *mapped) Free() {} // arena.release unmaps

// sliceMemory is the fallback where nothing could be mapped: a Go slice reserved up to the
// limit, so that a grow never copies.
type sliceMemory struct {
	b   []byte
	max uint64
}

func (m *sliceMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if m.b == nil {
		m.b = make([]byte, 0, m.max)
	}
	m.b = m.b[:size]
	return m.b
}

func (m *sliceMemory) Free() { m.b = nil }
