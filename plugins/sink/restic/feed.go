package restic

import (
	"errors"
	"fmt"
	"io"
)

const (
	feedChunk = 256 << 10
	// stdinPipeSize is what restic's stdin pipe is grown to where the system allows it
	// (Linux's limit for unprivileged processes, /proc/sys/fs/pipe-max-size). With the
	// default 64 KiB pipe nightjar and restic take turns every 64 KiB; measured on 1 GiB,
	// the larger pipe halves the context switches and cuts the run by about 7%.
	stdinPipeSize = 1 << 20
	// replayLimit bounds what a Put keeps to replay into a second restic after the first
	// found the repository locked. restic takes its lock before it reads stdin, so such an
	// attempt has consumed at most a pipe buffer and a chunk or two.
	replayLimit = stdinPipeSize + 4*feedChunk
)

// errFeedStopped: the attempt ended (restic exited) while the feed waited for the source.
var errFeedStopped = errors.New("restic exited")

// sourceError is a read error of the artifact stream: the run is failing, and restic must
// be stopped before it sees an end of input that would look like a complete file.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return fmt.Sprintf("reading the artifact: %v", e.err) }
func (e *sourceError) Unwrap() error { return e.err }

// feed is the stdin side of one Put across restic attempts. One goroutine reads the
// artifact once, in order; each attempt's writer takes chunks from it. The first
// replayLimit bytes are kept so that an attempt that failed before restic read them can be
// replayed into the next one. Memory is bounded: a few chunks plus the replay log.
type feed struct {
	chunks chan []byte // closed at the end of the source; err is then set
	free   chan []byte
	quit   chan struct{}
	err    error // the source's read error, nil at a clean EOF

	n        int64    // bytes taken from the source
	log      [][]byte // chunks kept for replay
	logged   int
	overflow bool // more than replayLimit was taken: no replay possible
}

func newFeed(r io.Reader) *feed {
	f := &feed{chunks: make(chan []byte), free: make(chan []byte, 2), quit: make(chan struct{})}
	go f.read(r)
	return f
}

func (f *feed) read(r io.Reader) {
	defer close(f.chunks)
	for {
		var buf []byte
		select {
		case buf = <-f.free:
		default:
			buf = make([]byte, feedChunk)
		}
		n, err := io.ReadFull(r, buf[:cap(buf)])
		if n > 0 {
			select {
			case f.chunks <- buf[:n]:
			case <-f.quit:
				return
			}
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return
		case err != nil:
			f.err = err
			return
		}
	}
}

// close stops the reading goroutine if it waits to hand over a chunk. (One blocked in the
// source's Read returns when the source is closed.)
func (f *feed) close() { close(f.quit) }

// replayable reports whether every byte taken so far is kept for a replay.
func (f *feed) replayable() bool { return !f.overflow }

// writeTo writes the kept bytes, then the rest of the source, into w and closes w at the
// source's clean end. It returns a *sourceError when the source failed (w is left open),
// errFeedStopped when stop closed first, or the write error when restic stopped reading.
func (f *feed) writeTo(w io.WriteCloser, stop <-chan struct{}) error {
	for _, c := range f.log {
		if _, err := w.Write(c); err != nil {
			return err
		}
	}
	for {
		select {
		case c, ok := <-f.chunks:
			if !ok {
				if f.err != nil {
					return &sourceError{f.err}
				}
				return w.Close()
			}
			f.n += int64(len(c))
			kept := false
			if !f.overflow {
				if f.logged+len(c) <= replayLimit {
					f.log = append(f.log, c)
					f.logged += len(c)
					kept = true
				} else {
					f.overflow, f.log = true, nil
				}
			}
			_, err := w.Write(c)
			if !kept {
				select {
				case f.free <- c[:0]:
				default:
				}
			}
			if err != nil {
				return err
			}
		case <-stop:
			return errFeedStopped
		}
	}
}
