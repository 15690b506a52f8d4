package zstd

import (
	"fmt"
	"io"
	"sync"
)

// frameEncoder compresses src into one complete zstd frame, appended to dst[:0] (whose
// capacity it may reuse). One parallelWriter goroutine uses each.
type frameEncoder interface {
	encodeFrame(dst, src []byte) ([]byte, error)
}

// parallelWriter compresses its input in fixed-size chunks on several goroutines, each
// chunk one independent zstd frame, and writes the frames in order. A stream of frames is
// a standard zstd stream (`zstd -d` and every decoder read concatenated frames).
//
// Why not the pure-Go library's stream encoder: it compresses one block at a time (one
// core), and its job-based WithConcurrentBlocks mode was ~20x slower in our benchmarks
// (v1.20.3). The same frames from either encoder keep the two builds alike.
// Independent frames lose the history across chunk borders; with chunks of twice the
// window and more the size difference is within a percent of `zstd -3 -T0`.
//
// Memory is bounded: at most inflight chunks (input and output) exist at a time.
type parallelWriter struct {
	w       io.Writer
	c       *compressors   // encoders, and in c.free every job's buffers: their number bounds memory
	cur     *frameJob      // the job being filled
	buf     []byte         // its input so far
	started bool           // a chunk was dispatched
	work    chan *frameJob // to the compressing goroutines
	ordered chan *frameJob // to the writing goroutine, in input order
	wg      sync.WaitGroup // compressors
	written chan struct{}  // closed when the writing goroutine has finished
	mu      sync.Mutex
	err     error // first write error
	closed  bool
	release func(*compressors) // after Close: c is free for another writer (nil: drop it)
}

type frameJob struct {
	in, out []byte
	done    chan struct{}
}

// compressors is what a writer works with besides its output: one encoder per compressing
// goroutine, and the chunks' buffers (one filling, the others compressing or being
// written), allocated once, in a fixed free list instead of a sync.Pool, so the garbage
// collector never sees them churn. After Close every buffer is back in free, and the
// whole set can serve the next writer.
type compressors struct {
	encs  []frameEncoder
	chunk int // the input of one frame
	free  chan *frameJob
}

func newCompressors(encs []frameEncoder, chunk, inflight int) *compressors {
	c := &compressors{encs: encs, chunk: chunk, free: make(chan *frameJob, inflight)}
	for range inflight {
		// Room for incompressible input: zstd stores such blocks raw, with small headers.
		c.free <- &frameJob{in: make([]byte, 0, chunk), out: make([]byte, 0, chunk+chunk/64+1024)}
	}
	return c
}

// newParallelWriter compresses in c's chunks on one goroutine per encoder of c.
func newParallelWriter(w io.Writer, c *compressors) *parallelWriter {
	inflight := cap(c.free)
	p := &parallelWriter{w: w, c: c, work: make(chan *frameJob, inflight),
		ordered: make(chan *frameJob, inflight), written: make(chan struct{})}
	for _, enc := range c.encs {
		p.wg.Add(1)
		go p.compress(enc)
	}
	go p.writeOut()
	return p
}

func (p *parallelWriter) compress(enc frameEncoder) {
	defer p.wg.Done()
	for j := range p.work {
		out, err := enc.encodeFrame(j.out, j.in)
		if err != nil {
			p.setErr(fmt.Errorf("zstd: compress: %w", err))
			out = j.out[:0]
		}
		j.out = out
		close(j.done)
	}
}

func (p *parallelWriter) writeOut() {
	defer close(p.written)
	for j := range p.ordered {
		<-j.done
		if p.firstErr() == nil {
			if _, err := p.w.Write(j.out); err != nil {
				p.setErr(err)
			}
		}
		j.in = j.in[:0]
		p.c.free <- j
	}
}

func (p *parallelWriter) firstErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *parallelWriter) setErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

// dispatch hands the filled chunk to the compressors; it blocks while too many chunks
// are in flight.
func (p *parallelWriter) dispatch() {
	j := p.cur
	p.cur = nil
	j.in = p.buf
	p.buf = nil
	j.done = make(chan struct{})
	p.started = true
	p.ordered <- j
	p.work <- j
}

func (p *parallelWriter) Write(b []byte) (int, error) {
	if err := p.firstErr(); err != nil {
		return 0, err
	}
	n := len(b)
	for len(b) > 0 {
		if p.cur == nil {
			p.cur = <-p.c.free // waits while every chunk is in flight
			p.buf = p.cur.in[:0]
		}
		k := min(len(b), p.c.chunk-len(p.buf))
		p.buf = append(p.buf, b[:k]...)
		b = b[k:]
		if len(p.buf) == p.c.chunk {
			p.dispatch()
		}
	}
	return n, nil
}

// Close compresses what is left (an empty input still makes one empty frame), waits for
// every frame to be written and returns the first error. It never closes the writer below.
func (p *parallelWriter) Close() error {
	if p.closed {
		return p.firstErr()
	}
	p.closed = true
	if p.cur == nil && !p.started {
		p.cur = <-p.c.free // an empty input still makes one (empty) frame
		p.buf = p.cur.in[:0]
	}
	if p.cur != nil && (len(p.buf) > 0 || !p.started) {
		p.dispatch()
	}
	close(p.work)
	close(p.ordered)
	p.wg.Wait()
	<-p.written
	if p.release != nil {
		p.release(p.c)
	}
	return p.firstErr()
}
