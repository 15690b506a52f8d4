package engine

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nightjar-backup/nightjar/core"
)

// ErrDamaged is wrapped by errors that mean a stored artifact does not match its manifest.
var ErrDamaged = errors.New("damaged")

// checkReader hashes what is read and, at EOF, compares size and sha256 with the manifest.
type checkReader struct {
	r        io.Reader
	h        *asyncHash
	n        int64
	wantN    int64
	wantSum  string
	what     string
	finished bool
	result   error // the check's outcome, once finished
}

func newCheckReader(r io.Reader, size int64, sum, what string) *checkReader {
	return &checkReader{r: r, h: newAsyncHash(), wantN: size, wantSum: sum, what: what}
}

func (c *checkReader) Read(p []byte) (int, error) {
	if c.finished {
		return 0, errOr(c.result, io.EOF)
	}
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.n > c.wantN {
		c.h.stop()
		c.finished = true
		c.result = fmt.Errorf("%w: %s is longer than the %d bytes the manifest records", ErrDamaged, c.what, c.wantN)
		return n, c.result
	}
	if err == io.EOF {
		if cerr := c.check(); cerr != nil {
			return n, cerr
		}
	}
	return n, err
}

func (c *checkReader) check() error {
	c.finished = true
	got := c.h.Sum()
	switch {
	case c.n != c.wantN:
		c.result = fmt.Errorf("%w: %s has %d bytes, the manifest records %d", ErrDamaged, c.what, c.n, c.wantN)
	case got != c.wantSum:
		c.result = fmt.Errorf("%w: %s has sha256 %s, the manifest records %s", ErrDamaged, c.what, got, c.wantSum)
	}
	return c.result
}

// Close stops the hashing goroutine of a reader not read to its end.
func (c *checkReader) Close() error {
	c.h.stop()
	return nil
}

// DecoderFunc rebuilds a transform from its manifest descriptor, for decoding.
type DecoderFunc func(desc map[string]string) (core.Transform, error)

// RegistryDecoders returns a DecoderFunc backed by the registry's transforms.
func RegistryDecoders(reg *core.Registry, env core.Env) DecoderFunc {
	return func(desc map[string]string) (core.Transform, error) {
		p, ok := reg.Transform(desc["type"])
		if !ok || p.FromDescriptor == nil {
			return nil, fmt.Errorf("unknown transform %q in manifest", desc["type"])
		}
		return p.FromDescriptor(desc, env)
	}
}

// OpenStored streams an artifact's stored bytes; reading it to EOF checks them against
// the manifest (an error wrapping ErrDamaged on mismatch).
func OpenStored(ctx context.Context, sink core.Sink, m *core.Manifest, a *core.Artifact) (io.ReadCloser, error) {
	rc, err := sink.Open(ctx, m.ID, a.Object)
	if err != nil {
		return nil, err
	}
	cr := newCheckReader(rc, a.StoredSize, a.StoredSHA256, a.Object)
	return readCloser{cr, func() error { cr.Close(); return rc.Close() }}, nil
}

// OpenRaw streams an artifact's raw bytes: stored bytes checked, decoded in reverse
// transform order, raw bytes checked. Only a reader read to EOF without error is verified.
func OpenRaw(ctx context.Context, sink core.Sink, m *core.Manifest, a *core.Artifact, decoders DecoderFunc) (io.ReadCloser, error) {
	return openRaw(ctx, sink, m, a, decoders, true)
}

// OpenRawForRestore is OpenRaw without the check of the stored bytes: the raw size and
// sha256 checked at EOF already prove every byte, and age authenticates each chunk on the
// way (zstd checks the frames that carry a checksum), so damage still fails the read. It
// saves one sha256 pass over the stored bytes on every restore. verify uses OpenRaw, which
// reports both.
func OpenRawForRestore(ctx context.Context, sink core.Sink, m *core.Manifest, a *core.Artifact, decoders DecoderFunc) (io.ReadCloser, error) {
	return openRaw(ctx, sink, m, a, decoders, false)
}

func openRaw(ctx context.Context, sink core.Sink, m *core.Manifest, a *core.Artifact, decoders DecoderFunc, checkStored bool) (io.ReadCloser, error) {
	var stored io.ReadCloser
	var err error
	if checkStored {
		stored, err = OpenStored(ctx, sink, m, a)
	} else {
		stored, err = sink.Open(ctx, m.ID, a.Object)
	}
	if err != nil {
		return nil, err
	}
	closers := []func() error{stored.Close}
	stored = readCloser{sinkReader{stored}, stored.Close}
	closeAll := func() error {
		var first error
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	var r io.Reader = stored
	for i := len(a.Transforms) - 1; i >= 0; i-- {
		t, err := decoders(a.Transforms[i])
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("artifact %s: %w", a.Name, err)
		}
		dr, err := t.Decode(r)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("artifact %s: %w", a.Name, err)
		}
		closers = append(closers, dr.Close)
		r = decodeReader{dr, fmt.Sprintf("%s: decoding %s", a.Object, a.Transforms[i]["type"])}
	}
	cr := newCheckReader(r, a.Size, a.SHA256, a.Name+" (decoded)")
	ra := newReadAhead(cr)
	// The read-ahead goroutine must stop before the readers below it are closed.
	closers = append(closers, cr.Close, ra.Close)
	return readCloser{ra, closeAll}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (rc readCloser) Close() error { return rc.close() }

// Check reads r to EOF and returns any error, including a damage found at the end.
func Drain(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// sinkReadError marks an error of the sink's own stream (a network or disk failure), so
// that it is not reported as damage when it surfaces through a decoder.
type sinkReadError struct{ err error }

func (e *sinkReadError) Error() string { return e.err.Error() }
func (e *sinkReadError) Unwrap() error { return e.err }

type sinkReader struct{ r io.Reader }

func (s sinkReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, ErrDamaged) {
		err = &sinkReadError{err}
	}
	return n, err
}

// decodeReader reports a decoder's failure (an age chunk that does not authenticate, a
// zstd frame whose checksum does not match) as damage.
type decodeReader struct {
	r    io.Reader
	what string
}

func (d decodeReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		var se *sinkReadError
		if !errors.As(err, &se) && !errors.Is(err, ErrDamaged) && !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("%w: %s failed: %v", ErrDamaged, d.what, err)
		}
	}
	return n, err
}
