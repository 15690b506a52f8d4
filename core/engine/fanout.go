package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/nightjar-backup/nightjar/core"
)

// chunkSize is the unit a fan-out hands to each sink's queue.
const chunkSize = 1 << 20

// pipePiece is how much of a chunk one write into a sink's pipe hands over. The pipe
// copies it into the sink's buffer, and Go's memmove copies 1 MiB or more with
// non-temporal stores, which bypass the cache: whatever reads the buffer next (the
// sink's write call, a checksum) then reads it from memory. Measured: a checksum right
// after a 1 MiB copy ran at 3.9 GB/s, after a copy of 64 bytes less at 9.0 GB/s.
const pipePiece = 256 << 10

// chunk is a buffer shared read-only by every sink queue it was sent to; the last reader
// returns it to the pool.
type chunk struct {
	b    []byte
	refs atomic.Int32
	pool chunkPool
}

func (c *chunk) release() {
	if c.refs.Add(-1) == 0 {
		c.pool.put(c)
	}
}

// chunkPool recycles a run's chunks. It is a bounded free list rather than a sync.Pool,
// which garbage collections empty: with the heap near its soft limit collections come
// often, and the chunks they dropped would be allocated again, a MiB at a time. A free
// list keeps a run's chunks a fixed set (on its own no faster in the measured runs:
// docs/benchmarks.md, large folders).
type chunkPool chan *chunk

// newChunkPool keeps up to n chunks: as many as a run's queues can hold at once.
func newChunkPool(n int) chunkPool { return make(chunkPool, n) }

func (p chunkPool) get() *chunk {
	select {
	case c := <-p:
		return c
	default:
		return &chunk{b: make([]byte, 0, chunkSize), pool: p}
	}
}

func (p chunkPool) put(c *chunk) {
	c.b = c.b[:0]
	select {
	case p <- c:
	default:
	}
}

// stream feeds one sink's Put for one object from a bounded queue.
type stream struct {
	sink   *sinkState
	ch     chan *chunk
	pw     *io.PipeWriter
	sent   int64
	failed atomic.Bool
	pumped chan struct{} // closed when the queue is drained
	done   chan struct{} // closed when Put has returned
	stored core.Stored
	err    error
}

// fanout copies what is written into chunks and queues them for every live stream. One slow
// sink slows the writer (its queue fills up); one failed sink only stops receiving.
type fanout struct {
	streams []*stream
	cur     *chunk
	pool    chunkPool
	hash    *chunkHash // nil unless hashed
}

// chunkHash hashes every chunk a fan-out sends, on its own goroutine. A sent chunk is
// read-only and it holds a reference until it has hashed it, so unlike asyncHash it copies
// nothing: in a backup to restic the copy into asyncHash's buffers moved each byte once
// more.
type chunkHash struct {
	ch  chan *chunk
	sum chan string
}

// chunkHashDepth is how many chunks may wait for the hash: with the one it hashes, what a
// hashed fan-out adds to the run's chunks.
const chunkHashDepth = 2

// hashed makes f hash every chunk it sends and returns that hash for the hashCounter of
// the stream written into f: its Write does nothing, its Sum is valid after finish.
func (f *fanout) hashed() streamHash {
	h := &chunkHash{ch: make(chan *chunk, chunkHashDepth), sum: make(chan string, 1)}
	go func() {
		s := sha256.New()
		for c := range h.ch {
			s.Write(c.b)
			c.release()
		}
		h.sum <- hex.EncodeToString(s.Sum(nil))
	}()
	f.hash = h
	return h
}

// Write does nothing: the fan-out hands the hash its chunks itself.
func (h *chunkHash) Write([]byte) {}

// Sum returns the sha256 of everything the fan-out sent; call it after finish.
func (h *chunkHash) Sum() string { return <-h.sum }

func (h *chunkHash) stop() {} // finish ends the goroutine

func newFanout(ctx context.Context, id core.SnapshotID, object string, sinks []*sinkState, depth int, pool chunkPool) *fanout {
	f := &fanout{pool: pool}
	for _, s := range sinks {
		pr, pw := io.Pipe()
		st := &stream{sink: s, ch: make(chan *chunk, depth), pw: pw, pumped: make(chan struct{}), done: make(chan struct{})}
		go func() {
			defer close(st.done)
			st.stored, st.err = s.sink.Put(ctx, id, object, pr)
			pr.CloseWithError(errOr(st.err, errPutReturned))
		}()
		go st.pump()
		f.streams = append(f.streams, st)
	}
	return f
}

var errPutReturned = errors.New("sink stopped reading")

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// pump writes queued chunks into the sink's pipe; after a failure it keeps draining so
// the writer never blocks on a dead sink.
func (st *stream) pump() {
	defer close(st.pumped)
	for c := range st.ch {
		for b := c.b; len(b) > 0 && !st.failed.Load(); b = b[min(len(b), pipePiece):] {
			if _, err := st.pw.Write(b[:min(len(b), pipePiece)]); err != nil {
				st.failed.Store(true)
			}
		}
		c.release()
	}
}

func (f *fanout) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if f.cur == nil {
			f.cur = f.pool.get()
		}
		k := copy(f.cur.b[len(f.cur.b):cap(f.cur.b)], p)
		f.cur.b = f.cur.b[:len(f.cur.b)+k]
		p = p[k:]
		if len(f.cur.b) == cap(f.cur.b) {
			f.send()
		}
	}
	return n, nil
}

func (f *fanout) send() {
	c := f.cur
	f.cur = nil
	if c == nil || len(c.b) == 0 {
		if c != nil {
			f.pool.put(c)
		}
		return
	}
	c.refs.Store(1) // the sender's own reference, dropped below
	if f.hash != nil {
		c.refs.Add(1)
		f.hash.ch <- c
	}
	for _, st := range f.streams {
		if st.failed.Load() {
			continue
		}
		c.refs.Add(1)
		st.sent += int64(len(c.b))
		st.ch <- c
	}
	c.release()
}

// finish flushes and closes every stream; abort (if not nil) makes each Put fail instead of
// completing, so nothing partial is stored. It waits for every Put to return.
func (f *fanout) finish(abort error) {
	if abort == nil {
		f.send()
	} else if f.cur != nil {
		f.pool.put(f.cur)
		f.cur = nil
	}
	if f.hash != nil {
		close(f.hash.ch)
	}
	for _, st := range f.streams {
		close(st.ch)
	}
	for _, st := range f.streams {
		<-st.pumped
		if abort != nil {
			st.pw.CloseWithError(abort)
		} else {
			st.pw.Close()
		}
		<-st.done
		if st.err == nil && abort == nil && (st.failed.Load() || st.stored.Size != st.sent) {
			// Put returned success without reading everything, or reports another size.
			st.err = fmt.Errorf("sink reported %d bytes stored, %d were sent", st.stored.Size, st.sent)
		}
	}
}
