package engine

import (
	"io"
	"sync"
)

// readAhead reads r on its own goroutine into a few buffers, so the work that produces
// the bytes (reading, decrypting, decompressing, hashing) runs beside the work that
// consumes them (a restore's file writes) instead of in series with it.
type readAhead struct {
	full    chan []byte
	free    chan []byte
	cur     []byte // the buffer being read
	off     int    // how much of cur was read
	err     error
	stop    chan struct{}
	stopped sync.Once
	done    chan struct{}
	srcErr  error // set by the reading goroutine before it closes full
}

const (
	aheadChunk   = 1 << 20
	aheadBuffers = 4
)

func newReadAhead(r io.Reader) *readAhead {
	ra := &readAhead{full: make(chan []byte, aheadBuffers), free: make(chan []byte, aheadBuffers),
		stop: make(chan struct{}), done: make(chan struct{})}
	for range aheadBuffers {
		ra.free <- make([]byte, aheadChunk)
	}
	go ra.fill(r)
	return ra
}

func (ra *readAhead) fill(r io.Reader) {
	defer close(ra.done)
	defer close(ra.full)
	for {
		var b []byte
		select {
		case b = <-ra.free:
		case <-ra.stop:
			return
		}
		n, err := io.ReadFull(r, b[:cap(b)])
		if n > 0 {
			select {
			case ra.full <- b[:n]:
			case <-ra.stop:
				return
			}
		}
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			ra.srcErr = io.EOF
			return
		}
		if err != nil {
			ra.srcErr = err
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	if ra.err != nil {
		return 0, ra.err
	}
	for ra.off == len(ra.cur) {
		if ra.cur != nil {
			ra.free <- ra.cur[:cap(ra.cur)] // the whole buffer, never a shrunk tail
			ra.cur = nil
		}
		b, ok := <-ra.full
		if !ok {
			ra.err = ra.srcErr // safe: written before full was closed
			return 0, ra.err
		}
		ra.cur, ra.off = b, 0
	}
	n := copy(p, ra.cur[ra.off:])
	ra.off += n
	return n, nil
}

// Close stops the reading goroutine and waits for it; it does not close the source.
func (ra *readAhead) Close() error {
	ra.stopped.Do(func() { close(ra.stop) })
	<-ra.done
	return nil
}
