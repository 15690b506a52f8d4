package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
)

// hashChunk and hashBuffers bound an asyncHash's memory (1.5 MiB).
const (
	hashChunk   = 256 << 10
	hashBuffers = 6
)

// asyncHash computes a sha256 on its own goroutine, so hashing a stream runs beside
// reading, compressing and encrypting instead of in series with them. It hashes what a
// fan-out does not see whole (a raw stream into transforms alone, a restore's reads); a
// fan-out hashes its own chunks without this copy (fanout.hashed).
// Write copies (a memmove is an order of magnitude cheaper than sha256), so the caller
// may reuse its buffer at once. Sum or stop must be called, or the goroutine leaks.
type asyncHash struct {
	full  chan []byte
	free  chan []byte
	cur   []byte
	sum   chan string
	n     int64
	close sync.Once
}

func newAsyncHash() *asyncHash {
	h := &asyncHash{full: make(chan []byte, hashBuffers), free: make(chan []byte, hashBuffers), sum: make(chan string, 1)}
	for range hashBuffers {
		h.free <- make([]byte, 0, hashChunk)
	}
	go func() {
		s := sha256.New()
		for b := range h.full {
			s.Write(b)
			h.free <- b[:0]
		}
		h.sum <- hex.EncodeToString(s.Sum(nil))
	}()
	return h
}

func (h *asyncHash) Write(p []byte) {
	h.n += int64(len(p))
	for len(p) > 0 {
		if h.cur == nil {
			h.cur = <-h.free
		}
		k := copy(h.cur[len(h.cur):cap(h.cur)], p)
		h.cur = h.cur[:len(h.cur)+k]
		p = p[k:]
		if len(h.cur) == cap(h.cur) {
			h.full <- h.cur
			h.cur = nil
		}
	}
}

// stop ends the hashing goroutine; it is safe to call more than once.
func (h *asyncHash) stop() {
	h.close.Do(func() {
		if len(h.cur) > 0 {
			h.full <- h.cur
			h.cur = nil
		}
		close(h.full)
	})
}

// Sum returns the hex sha256 of everything written. Call it once, after the last Write.
func (h *asyncHash) Sum() string {
	h.stop()
	return <-h.sum
}
