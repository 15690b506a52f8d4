package blob

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"time"
)

// The data ring. gRPC carries a Put's data in HTTP/2 frames of at most 16 KiB, each one
// encrypted, flow-controlled and handed between goroutines on both sides: a plugin sink
// was 0.4x as fast as the built-in local sink. A pipe instead of gRPC was measured too:
// on a 2-vCPU virtual machine, 1 GiB through a pipe into a file took 1.8-2.9 s, against
// 0.5-0.9 s through shared memory.
//
// So nightjar starts each plugin with a ring: a shared memory file of ringSlots slots of
// ChunkSize bytes, which nightjar writes and the plugin maps read-only, and a socket pair
// that carries one small message per slot filled and one byte back per slot released. It
// is inherited at start, has no name in the file system, and only the two processes hold
// it. nightjar reads the data straight into a slot; the plugin's store writes it from the
// slot into its file. The header, the trailer with size and checksum, and the plugin's
// answer stay on the authenticated gRPC stream, so a Put is verified exactly as before.
// The message format is in blob.proto (PutHeader.ring_seq).

// ringEnv tells a plugin the ring's fds: "MEMFD,SOCKET".
const ringEnv = "NIGHTJAR_BLOB_RING"

const (
	ringSlots = 4
	msgSize   = 16 // 8-byte Put number, 4-byte slot, 4-byte length
	lenEnd    = 0
	lenAbort  = math.MaxUint32
	// ringGrace is how long a Put may still wait on the ring once it is over (cancelled,
	// or the plugin answered): the plugin drains a Put it gave up on, so only a hung plugin
	// runs out of it, and then the ring is closed for good.
	ringGrace = 5 * time.Second
)

var (
	errPutAborted = errors.New("nightjar aborted the Put; nothing stored")
	errRing       = errors.New("data ring")
)

// Ring is nightjar's side of a plugin's data ring (AttachRing). One Put at a time uses
// it; a Put that finds it busy sends its data in chunk messages instead.
type Ring struct {
	mu     sync.Mutex // held by the Put using the ring
	mem    []byte     // ringSlots slots of ChunkSize, shared with the plugin
	ctl    *os.File   // messages out, release bytes in
	child  []*os.File // the plugin's ends, until Started
	unmap  func() error
	seq    uint64 // the last Put number used
	filled uint64 // data messages sent, ever: the next slot is filled % ringSlots
	freed  uint64 // slots the plugin has released, ever
	broken bool
	msg    [msgSize]byte
	acks   [64]byte
}

// Started closes this process's copies of the plugin's ends, so that the ring fails
// (instead of blocking) once the plugin has exited.
func (g *Ring) Started() {
	if g == nil {
		return
	}
	for _, f := range g.child {
		f.Close()
	}
	g.child = nil
}

// Close releases the ring; call it after the plugin has stopped.
func (g *Ring) Close() error {
	if g == nil {
		return nil
	}
	g.Started()
	g.mu.Lock()
	defer g.mu.Unlock()
	var err error
	if !g.broken { // else fail closed it
		g.broken = true
		err = g.ctl.Close()
	}
	if g.unmap != nil {
		err = errors.Join(err, g.unmap())
		g.unmap = nil
	}
	return err
}

// take locks the ring for one Put if it is free and usable.
func (g *Ring) take() bool {
	if g == nil || !g.mu.TryLock() {
		return false
	}
	if g.broken {
		g.mu.Unlock()
		return false
	}
	return true
}

// slot waits until the next slot is free and returns it.
func (g *Ring) slot() ([]byte, error) {
	for g.filled-g.freed >= ringSlots {
		n, err := g.ctl.Read(g.acks[:])
		if err != nil {
			return nil, g.fail(err)
		}
		g.freed += uint64(n)
		if g.freed > g.filled {
			return nil, g.fail(errors.New("the plugin released more slots than were filled"))
		}
	}
	i := int(g.filled % ringSlots)
	return g.mem[i*ChunkSize : (i+1)*ChunkSize], nil
}

// send announces n bytes in the slot slot returned last (n > 0), or ends (lenEnd) or
// aborts (lenAbort) Put seq.
func (g *Ring) send(seq uint64, n uint32) error {
	binary.BigEndian.PutUint64(g.msg[:8], seq)
	binary.BigEndian.PutUint32(g.msg[8:12], uint32(g.filled%ringSlots))
	binary.BigEndian.PutUint32(g.msg[12:], n)
	if _, err := g.ctl.Write(g.msg[:]); err != nil {
		return g.fail(err)
	}
	if n != lenEnd && n != lenAbort {
		g.filled++
	}
	return nil
}

// fail breaks the ring: a message may be half sent or a release byte lost, so the plugin
// sees the socket closed, and later Puts use chunk messages.
func (g *Ring) fail(err error) error {
	g.broken = true
	g.ctl.Close()
	return fmt.Errorf("%w: %w", errRing, err)
}

// guard bounds the waits of one Put: once ctx is done or the plugin has answered, a
// blocked read or write has ringGrace left. The returned func ends the guard.
func (g *Ring) guard(ctx context.Context, answered <-chan struct{}) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-ctx.Done():
		case <-answered:
		case <-done:
			return
		}
		g.ctl.SetDeadline(time.Now().Add(ringGrace))
	}()
	return func() {
		close(done)
		<-exited
		g.ctl.SetDeadline(time.Time{})
	}
}

// ringIn is the plugin's side of the data ring.
type ringIn struct {
	mem   []byte // mapped read-only
	slots int
	ctl   *os.File
	turn  chan struct{} // one Put reads the ring at a time
	// passed is the highest Put number that has had its turn: a Put with a lower number
	// was overtaken, and its messages were skipped.
	passed uint64
	held   bool // the slot next returned last is still being read
	msg    [msgSize]byte
	one    [1]byte
	err    error // set once the ring is unusable
}

func newRingIn(mem []byte, ctl *os.File) *ringIn {
	return &ringIn{mem: mem, slots: len(mem) / ChunkSize, ctl: ctl, turn: make(chan struct{}, 1)}
}

// acquire waits for the ring's turn for Put seq.
func (p *ringIn) acquire(ctx context.Context, seq uint64) error {
	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("put: waiting for the data ring: %w", ctx.Err())
	}
	if p.err != nil || seq <= p.passed {
		<-p.turn
		if p.err != nil {
			return p.err
		}
		return fmt.Errorf("%w: put: data ring message %d came after %d; nothing stored", errInvalid, seq, p.passed)
	}
	p.passed = seq
	return nil
}

func (p *ringIn) release() { <-p.turn }

// next releases the slot it returned last and returns the data of Put seq's next
// message: io.EOF at its end, errPutAborted when nightjar aborted it. Messages of lower
// numbers, which a Put whose call never reached the plugin may have left, are skipped.
// The data stays valid until the next call.
func (p *ringIn) next(seq uint64) ([]byte, error) {
	if p.held {
		p.held = false
		if err := p.free(); err != nil {
			return nil, err
		}
	}
	for p.err == nil {
		if _, err := io.ReadFull(p.ctl, p.msg[:]); err != nil {
			return nil, p.fail(err)
		}
		s := binary.BigEndian.Uint64(p.msg[:8])
		slot, n := int(binary.BigEndian.Uint32(p.msg[8:12])), binary.BigEndian.Uint32(p.msg[12:])
		switch {
		case s > seq:
			return nil, p.fail(fmt.Errorf("a message of Put %d while Put %d reads", s, seq))
		case n == lenEnd || n == lenAbort:
			if s < seq {
				continue
			}
			if n == lenEnd {
				return nil, io.EOF
			}
			return nil, errPutAborted
		case n > ChunkSize || slot >= p.slots:
			return nil, p.fail(fmt.Errorf("a message for %d bytes in slot %d (ring of %d slots of %d)", n, slot, p.slots, ChunkSize))
		case s < seq:
			if err := p.free(); err != nil {
				return nil, err
			}
			continue
		}
		p.held = true
		return p.mem[slot*ChunkSize : slot*ChunkSize+int(n)], nil
	}
	return nil, p.err
}

// free tells nightjar that a slot may be filled again.
func (p *ringIn) free() error {
	p.one[0] = 1
	if _, err := p.ctl.Write(p.one[:]); err != nil {
		return p.fail(err)
	}
	return nil
}

// fail marks the ring unusable: nightjar closed it, or it carried something that is not
// a message. Every later Put on it fails; nightjar stops using a ring it closed.
func (p *ringIn) fail(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = errors.New("closed by nightjar")
	}
	p.err = fmt.Errorf("%w: %v", errRing, err)
	return p.err
}
