package retention

// sliceMemory is a linear memory in Go's heap, reserved up to max at once (growing by
// reallocation copies the whole memory on every grow).
type sliceMemory struct {
	buf []byte
	max uint64
}

func (m *sliceMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if m.buf == nil {
		m.buf = make([]byte, 0, m.max)
	}
	return m.buf[:size]
}

func (m *sliceMemory) Free() { m.buf = nil }
