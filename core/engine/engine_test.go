package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core"
)

// memSink is an in-memory core.Sink (a unit-test fake) with hooks for failures.
type memSink struct {
	mu        sync.Mutex
	objects   map[string][]byte // "<id>/<object>"
	manifests map[core.SnapshotID]*core.Manifest
	deleted   []core.SnapshotID

	raw       bool
	putHook   func(object string, r io.Reader) (io.Reader, error) // may wrap or fail the read
	commitErr error
	discard   bool // count bytes instead of keeping them
	received  atomic.Int64
}

func newMemSink() *memSink {
	return &memSink{objects: map[string][]byte{}, manifests: map[core.SnapshotID]*core.Manifest{}}
}

func (s *memSink) WantsRaw() bool { return s.raw }

func (s *memSink) Put(ctx context.Context, id core.SnapshotID, object string, r io.Reader) (core.Stored, error) {
	if s.putHook != nil {
		var err error
		if r, err = s.putHook(object, r); err != nil {
			return core.Stored{}, err
		}
	}
	var buf bytes.Buffer
	var w io.Writer = &buf
	if s.discard {
		w = io.Discard
	}
	n, err := io.Copy(w, countingReader{r, &s.received})
	if err != nil {
		return core.Stored{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects[string(id)+"/"+object] = buf.Bytes()
	return core.Stored{Size: n}, nil
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (s *memSink) Commit(ctx context.Context, m *core.Manifest) error {
	if s.commitErr != nil {
		return s.commitErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range m.Artifacts {
		if _, ok := s.objects[string(m.ID)+"/"+a.Object]; !ok && !s.discard {
			return fmt.Errorf("object %s missing", a.Object)
		}
	}
	s.manifests[m.ID] = m
	return nil
}

func (s *memSink) List(ctx context.Context) ([]*core.Manifest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*core.Manifest
	for _, m := range s.manifests {
		out = append(out, m)
	}
	core.SortNewestFirst(out)
	return out, nil
}

func (s *memSink) Open(ctx context.Context, id core.SnapshotID, object string) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[string(id)+"/"+object]
	if !ok {
		return nil, errors.New("not found")
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (s *memSink) Delete(ctx context.Context, id core.SnapshotID) error {
	return s.DeleteLeftover(ctx, id)
}

func (s *memSink) Leftovers(ctx context.Context) ([]core.Leftover, error) { return nil, nil }

func (s *memSink) DeleteLeftover(ctx context.Context, id core.SnapshotID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.objects {
		if strings.HasPrefix(k, string(id)+"/") {
			delete(s.objects, k)
		}
	}
	s.deleted = append(s.deleted, id)
	return nil
}

// genSource writes size pseudo-random-ish bytes (a fake Source), optionally failing after
// failAfter bytes.
type genSource struct {
	name      string
	size      int64
	failAfter int64 // 0: never
	wrote     atomic.Int64
}

func (g *genSource) Describe() core.ArtifactSpec {
	return core.ArtifactSpec{Name: g.name, Kind: "gen", Filename: g.name + ".bin"}
}

func (g *genSource) Snapshot(ctx context.Context, w io.Writer) (map[string]string, error) {
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i*7 + i/251)
	}
	var done int64
	for done < g.size {
		if g.failAfter > 0 && done >= g.failAfter {
			return nil, errors.New("disk on fire")
		}
		k := min(int64(len(buf)), g.size-done)
		buf[0] = byte(done >> 16) // vary chunks a little
		if _, err := w.Write(buf[:k]); err != nil {
			return nil, err
		}
		done += k
		g.wrote.Store(done)
	}
	return map[string]string{"gen": "yes"}, nil
}

// xorTransform is a fake transform that changes every byte (so raw and stored differ).
type xorTransform struct{}

type xorWriter struct{ w io.Writer }

func (x xorWriter) Write(p []byte) (int, error) {
	q := make([]byte, len(p))
	for i, b := range p {
		q[i] = b ^ 0x5a
	}
	return x.w.Write(q)
}
func (x xorWriter) Close() error { return nil }

func (xorTransform) Encode(w io.Writer) (io.WriteCloser, error) { return xorWriter{w}, nil }
func (xorTransform) Decode(r io.Reader) (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() { _, err := io.Copy(xorWriter{pw}, r); pw.CloseWithError(err) }()
	return pr, nil
}
func (xorTransform) Ext() string                   { return ".xor" }
func (xorTransform) Descriptor() map[string]string { return map[string]string{"type": "xor"} }

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func pipeline(srcs []core.Source, sinks ...*memSink) *Pipeline {
	p := &Pipeline{Name: "p", Host: "h", Sources: srcs, Transforms: []core.Transform{xorTransform{}}}
	for i, s := range sinks {
		p.Sinks = append(p.Sinks, NamedSink{Name: fmt.Sprintf("s%d", i), Sink: s})
	}
	return p
}

// Without transforms a blob sink stores the raw bytes, hashed once: its manifest's stored
// size and sha256 must still be those of what it stored.
func TestRunWithoutTransforms(t *testing.T) {
	blob, raw := newMemSink(), newMemSink()
	raw.raw = true
	p := pipeline([]core.Source{&genSource{name: "one", size: 5<<20 + 3}, &genSource{name: "two", size: 0}}, blob, raw)
	p.Transforms = nil
	res, err := Run(context.Background(), p)
	if err != nil || res.Committed() != 2 {
		t.Fatalf("run: %v, committed %d", err, res.Committed())
	}
	for _, s := range []*memSink{blob, raw} {
		for _, a := range s.manifests[res.ID].Artifacts {
			stored := s.objects[string(res.ID)+"/"+a.Object]
			if a.Object != a.Name+".bin" || int64(len(stored)) != a.StoredSize || a.StoredSize != a.Size ||
				sum(stored) != a.StoredSHA256 || a.SHA256 != a.StoredSHA256 || len(a.Transforms) != 0 {
				t.Errorf("%s: %d bytes stored (sha %s), manifest %+v", a.Object, len(stored), sum(stored), a)
			}
		}
	}
}

func TestRunStoresEveryArtifactInEverySink(t *testing.T) {
	blobA, blobB, raw := newMemSink(), newMemSink(), newMemSink()
	raw.raw = true
	srcs := []core.Source{&genSource{name: "one", size: 3<<20 + 17}, &genSource{name: "two", size: 0}}
	res, err := Run(context.Background(), pipeline(srcs, blobA, raw, blobB))
	if err != nil {
		t.Fatal(err)
	}
	if res.Committed() != 3 {
		t.Fatalf("committed %d of 3", res.Committed())
	}
	for _, s := range []*memSink{blobA, blobB, raw} {
		m := s.manifests[res.ID]
		if m == nil || len(m.Artifacts) != 2 {
			t.Fatalf("manifest: %+v", m)
		}
		for _, a := range m.Artifacts {
			stored := s.objects[string(res.ID)+"/"+a.Object]
			if int64(len(stored)) != a.StoredSize || sum(stored) != a.StoredSHA256 {
				t.Errorf("%s: stored %d bytes, manifest %d; sha %s vs %s", a.Object, len(stored), a.StoredSize, sum(stored), a.StoredSHA256)
			}
			if s.raw {
				if a.Object != a.Name+".bin" || a.SHA256 != a.StoredSHA256 || len(a.Transforms) != 0 {
					t.Errorf("raw sink got a transformed artifact: %+v", a)
				}
				continue
			}
			if a.Object != a.Name+".bin.xor" || len(a.Transforms) != 1 || a.Transforms[0]["type"] != "xor" {
				t.Errorf("blob artifact: %+v", a)
			}
			// Decode and check the raw side too.
			rc, err := OpenRaw(context.Background(), s, m, &a, func(map[string]string) (core.Transform, error) { return xorTransform{}, nil })
			if err != nil {
				t.Fatal(err)
			}
			if err := Drain(rc); err != nil {
				t.Errorf("%s: %v", a.Object, err)
			}
		}
	}
	if blobA.manifests[res.ID].Artifacts[0].SHA256 != raw.manifests[res.ID].Artifacts[0].SHA256 {
		t.Error("raw sha256 differs between raw and blob sinks")
	}
}

func TestFailingSinkDoesNotStopOthers(t *testing.T) {
	tests := []struct {
		name  string
		setup func(s *memSink)
		want  string
	}{
		{"put fails at once", func(s *memSink) {
			s.putHook = func(string, io.Reader) (io.Reader, error) { return nil, errors.New("bucket gone") }
		}, "bucket gone"},
		{"put fails midway", func(s *memSink) {
			s.putHook = func(_ string, r io.Reader) (io.Reader, error) { return &failingReader{r: r, after: 1 << 20}, nil }
		}, "connection reset"},
		{"put stores less than it was sent", func(s *memSink) {
			s.putHook = func(_ string, r io.Reader) (io.Reader, error) { return io.LimitReader(r, 100), nil }
		}, "sink reported 100 bytes stored"},
		{"commit fails", func(s *memSink) { s.commitErr = errors.New("quota exceeded") }, "quota exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			good, bad, good2 := newMemSink(), newMemSink(), newMemSink()
			tc.setup(bad)
			res, err := Run(context.Background(), pipeline([]core.Source{&genSource{name: "a", size: 8 << 20}, &genSource{name: "b", size: 1 << 20}}, good, bad, good2))
			if !errors.Is(err, core.ErrPartial) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `sink "s1"`) {
				t.Fatalf("want ErrPartial naming sink s1 and %q, got %v", tc.want, err)
			}
			if res.Committed() != 2 || res.Sinks[1].Committed || res.Sinks[1].Err == nil {
				t.Fatalf("results: %+v", res.Sinks)
			}
			if len(good.manifests) != 1 || len(good2.manifests) != 1 || len(bad.manifests) != 0 {
				t.Fatalf("manifests: good %d, good2 %d, bad %d", len(good.manifests), len(good2.manifests), len(bad.manifests))
			}
			if len(bad.deleted) != 1 || len(bad.objects) != 0 {
				t.Errorf("the failed sink's objects were not cleaned up: %v", bad.objects)
			}
		})
	}
}

type failingReader struct {
	r     io.Reader
	n     int
	after int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n >= f.after {
		return 0, errors.New("connection reset")
	}
	n, err := f.r.Read(p)
	f.n += n
	return n, err
}

func TestAllSinksFail(t *testing.T) {
	a, b := newMemSink(), newMemSink()
	a.commitErr, b.commitErr = errors.New("no"), errors.New("no")
	_, err := Run(context.Background(), pipeline([]core.Source{&genSource{name: "a", size: 10}}, a, b))
	if err == nil || errors.Is(err, core.ErrPartial) || !strings.Contains(err.Error(), "no sink committed") {
		t.Fatalf("want a non-partial failure, got %v", err)
	}
}

func TestSourceErrorCommitsNowhere(t *testing.T) {
	a, raw := newMemSink(), newMemSink()
	raw.raw = true
	srcs := []core.Source{&genSource{name: "ok", size: 2 << 20}, &genSource{name: "broken", size: 8 << 20, failAfter: 3 << 20}}
	res, err := Run(context.Background(), pipeline(srcs, a, raw))
	if err == nil || !strings.Contains(err.Error(), `source "broken": disk on fire`) || errors.Is(err, core.ErrPartial) {
		t.Fatalf("want the source's error, got %v", err)
	}
	for i, s := range []*memSink{a, raw} {
		if len(s.manifests) != 0 {
			t.Errorf("sink %d committed after a source error", i)
		}
		if len(s.objects) != 0 {
			t.Errorf("sink %d keeps objects of the failed run: %d", i, len(s.objects))
		}
		if res.Sinks[i].Committed {
			t.Errorf("result says sink %d committed", i)
		}
	}
}

// laterTransform writes what it is given from its own goroutine, some time after Write
// returned, as zstd's parallel frames do; only its Close waits for those writes.
type laterTransform struct {
	xorTransform
	closed *atomic.Bool
}

type laterWriter struct {
	ch     chan []byte
	done   chan struct{}
	closed *atomic.Bool
}

func (t laterTransform) Encode(w io.Writer) (io.WriteCloser, error) {
	l := &laterWriter{ch: make(chan []byte, 16), done: make(chan struct{}), closed: t.closed}
	go func() {
		defer close(l.done)
		for b := range l.ch {
			time.Sleep(time.Millisecond)
			w.Write(b)
		}
	}()
	return l, nil
}

func (l *laterWriter) Write(p []byte) (int, error) { l.ch <- bytes.Clone(p); return len(p), nil }
func (l *laterWriter) Close() error                { close(l.ch); <-l.done; l.closed.Store(true); return nil }

// A source that fails while an encoder still has writes in flight: the encoder is closed
// (its writes end) before the sinks' streams are, and nothing is committed. Before, a late
// write of zstd's could panic on a closed channel.
func TestSourceErrorWithWritesInFlight(t *testing.T) {
	a := newMemSink()
	p := pipeline([]core.Source{&genSource{name: "broken", size: 8 << 20, failAfter: 1 << 20}}, a)
	var closed atomic.Bool
	p.Transforms = []core.Transform{laterTransform{closed: &closed}}
	if _, err := Run(context.Background(), p); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("want the source's error, got %v", err)
	}
	if !closed.Load() {
		t.Error("the run returned without closing its encoder, which may still be writing")
	}
	if len(a.manifests) != 0 || len(a.objects) != 0 {
		t.Fatalf("the failed run left %d manifests, %d objects", len(a.manifests), len(a.objects))
	}
}

func TestCancelledRunCommitsNowhere(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a := newMemSink()
	a.putHook = func(_ string, r io.Reader) (io.Reader, error) {
		return &hookReader{r: r, at: 1 << 20, fn: cancel}, nil
	}
	_, err := Run(ctx, pipeline([]core.Source{&genSource{name: "a", size: 16 << 20}}, a))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if len(a.manifests) != 0 {
		t.Fatal("a cancelled run committed")
	}
}

type hookReader struct {
	r    io.Reader
	n    int
	at   int
	fn   func()
	once sync.Once
}

func (h *hookReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.n += n
	if h.n >= h.at {
		h.once.Do(h.fn)
	}
	return n, err
}

// TestSlowSinkIsBoundedAndCommits: while one sink does not read at all, the others get
// at most the bounded queue ahead of it; once it reads, every sink commits.
func TestSlowSinkIsBoundedAndCommits(t *testing.T) {
	gate := make(chan struct{})
	slow, fast := newMemSink(), newMemSink()
	slow.discard, fast.discard = true, true
	slow.putHook = func(_ string, r io.Reader) (io.Reader, error) { <-gate; return r, nil }
	src := &genSource{name: "a", size: 64 << 20}
	p := pipeline([]core.Source{src}, fast, slow)
	p.QueueDepth = 4
	done := make(chan error, 1)
	go func() { _, err := Run(context.Background(), p); done <- err }()

	// Wait until the fast sink stops receiving: the slow sink's queue is full.
	var last int64 = -1
	for i := 0; ; i++ {
		time.Sleep(50 * time.Millisecond)
		n := fast.received.Load()
		if n == last && n > 0 {
			break
		}
		if i > 200 {
			t.Fatal("the fast sink never stalled")
		}
		last = n
	}
	// Queue depth 4 chunks of 1 MiB, one chunk in the pipe, one being filled.
	if max := int64(p.QueueDepth+2) * chunkSize; fast.received.Load() > max || src.wrote.Load() > max+chunkSize {
		t.Fatalf("ran ahead of the stalled sink: fast sink got %d bytes, source wrote %d (bound %d)", fast.received.Load(), src.wrote.Load(), max)
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(slow.manifests) != 1 || len(fast.manifests) != 1 || slow.received.Load() != 64<<20 {
		t.Fatalf("manifests slow %d fast %d, slow got %d", len(slow.manifests), len(fast.manifests), slow.received.Load())
	}
}

// TestMemoryIsBounded streams 512 MiB to three sinks and samples the heap: it must stay
// far below the artifact's size (no artifact is ever held whole, no unbounded buffer).
func TestMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 512 MiB")
	}
	const size = 512 << 20
	sinks := []*memSink{newMemSink(), newMemSink(), newMemSink()}
	sinks[2].raw = true
	for _, s := range sinks {
		s.discard = true
	}
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	res, err := Run(context.Background(), pipeline([]core.Source{&genSource{name: "big", size: size}}, sinks...))
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Artifacts[0].Size != size {
		t.Fatalf("size %d", res.Artifacts[0].Size)
	}
	if p := peak.Load(); p > 64<<20 {
		t.Fatalf("heap in use peaked at %d MiB while streaming %d MiB", p>>20, size>>20)
	}
	t.Logf("heap in use peaked at %.1f MiB", float64(peak.Load())/(1<<20))
}

func TestRunNeedsSourcesAndSinks(t *testing.T) {
	if _, err := Run(context.Background(), &Pipeline{}); err == nil {
		t.Fatal("an empty pipeline ran")
	}
}

// TestReadAheadManySmallReads reads far more than its buffers in small, odd-sized reads
// (a restore's tar reader does): every buffer must go back to the free list whole.
func TestReadAheadManySmallReads(t *testing.T) {
	data := make([]byte, 20*aheadChunk+12345)
	for i := range data {
		data[i] = byte(i * 31)
	}
	ra := newReadAhead(bytes.NewReader(data))
	defer ra.Close()
	var got bytes.Buffer
	buf := make([]byte, 700)
	for {
		n, err := ra.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read %d bytes, want %d", got.Len(), len(data))
	}
	ra2 := newReadAhead(&failingReader{r: bytes.NewReader(data), after: 3 * aheadChunk})
	if _, err := io.Copy(io.Discard, ra2); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("source error: %v", err)
	}
	ra2.Close()
}

// OpenRawForRestore skips the stored-bytes hash but still fails on any damage: the raw
// size and sha256 are checked at EOF. Table: a flipped byte, a truncated object, an
// appended byte — each must fail both readers, and an intact object must pass both.
func TestOpenRawForRestoreStillCatchesDamage(t *testing.T) {
	xor := func(map[string]string) (core.Transform, error) { return xorTransform{}, nil }
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		ok     bool
	}{
		{"intact", func(b []byte) []byte { return b }, true},
		{"flipped", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }, false},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, false},
		{"appended", func(b []byte) []byte { return append(b, 0) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newMemSink()
			res, err := Run(context.Background(), pipeline([]core.Source{&genSource{name: "one", size: 1<<20 + 5}}, s))
			if err != nil {
				t.Fatal(err)
			}
			m := s.manifests[res.ID]
			a := m.Artifacts[0]
			key := string(res.ID) + "/" + a.Object
			s.objects[key] = tc.damage(append([]byte(nil), s.objects[key]...))
			for name, open := range map[string]func(context.Context, core.Sink, *core.Manifest, *core.Artifact, DecoderFunc) (io.ReadCloser, error){
				"OpenRaw": OpenRaw, "OpenRawForRestore": OpenRawForRestore,
			} {
				rc, err := open(context.Background(), s, m, &a, xor)
				if err != nil {
					t.Fatal(err)
				}
				err = Drain(rc)
				rc.Close()
				if tc.ok && err != nil {
					t.Errorf("%s: %v", name, err)
				}
				if !tc.ok && !errors.Is(err, ErrDamaged) {
					t.Errorf("%s: err = %v, want ErrDamaged", name, err)
				}
			}
		})
	}
}

// TestChunkPoolSurvivesCollections checks that chunks stay in the run's free list through
// garbage collections (a sync.Pool drops them), and that the list holds no more than its
// size: the extra chunk is left to the collector.
func TestChunkPoolSurvivesCollections(t *testing.T) {
	pool := newChunkPool(2)
	a, b, c := pool.get(), pool.get(), pool.get()
	a.b = append(a.b, "data"...)
	pool.put(a)
	pool.put(b)
	pool.put(c)
	runtime.GC()
	runtime.GC()
	got := []*chunk{pool.get(), pool.get()}
	if !slices.Contains(got, a) || !slices.Contains(got, b) {
		t.Fatal("a chunk put back was not reused after two collections")
	}
	if len(a.b) != 0 || cap(a.b) != chunkSize {
		t.Errorf("a reused chunk holds %d bytes of %d, want 0 of %d", len(a.b), cap(a.b), chunkSize)
	}
	if d := pool.get(); d == c {
		t.Error("the pool kept more chunks than its size")
	}
}

// TestRunHashesEveryWiring checks the manifests' sha256 and sizes for each way the raw and
// the stored stream are hashed: from a fan-out's chunks (a raw sink's, or the blob sinks'
// when there are no transforms) or from a hash of their own (the raw stream, when it goes
// into transforms alone). The source reuses and changes its buffer after each write.
func TestRunHashesEveryWiring(t *testing.T) {
	src := &genSource{name: "one", size: 3<<20 + 4097}
	var want bytes.Buffer
	if _, err := src.Snapshot(context.Background(), &want); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		transforms bool
		raw, blob  bool
	}{
		{"transforms, blob sink", true, false, true},
		{"transforms, raw sink", true, true, false},
		{"transforms, both", true, true, true},
		{"no transforms, blob sink", false, false, true},
		{"no transforms, raw sink", false, true, false},
		{"no transforms, both", false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sinks []*memSink
			if tc.blob {
				sinks = append(sinks, newMemSink())
			}
			if tc.raw {
				s := newMemSink()
				s.raw = true
				sinks = append(sinks, s)
			}
			p := pipeline([]core.Source{&genSource{name: src.name, size: src.size}}, sinks...)
			if !tc.transforms {
				p.Transforms = nil
			}
			res, err := Run(context.Background(), p)
			if err != nil || res.Committed() != len(sinks) {
				t.Fatalf("run: %v, committed %d of %d", err, res.Committed(), len(sinks))
			}
			for _, s := range sinks {
				a := s.manifests[res.ID].Artifacts[0]
				stored := s.objects[string(res.ID)+"/"+a.Object]
				if a.SHA256 != sum(want.Bytes()) || a.Size != int64(want.Len()) {
					t.Errorf("raw sink %v: raw sha256 %s, %d bytes; want %s, %d", s.raw, a.SHA256, a.Size, sum(want.Bytes()), want.Len())
				}
				if a.StoredSHA256 != sum(stored) || a.StoredSize != int64(len(stored)) {
					t.Errorf("raw sink %v: stored sha256 %s, %d bytes; stored were %s, %d", s.raw, a.StoredSHA256, a.StoredSize, sum(stored), len(stored))
				}
			}
		})
	}
}
