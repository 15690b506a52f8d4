// Package blobtest is the conformance suite for blob.Store implementations: nightjar's own
// stores and every external sink plugin run it. A store that passes it can carry nightjar's
// snapshot layout and commit protocol.
//
//	func TestConformance(t *testing.T) {
//		blobtest.Run(t, func(t *testing.T) blob.Store { return newStore(t, t.TempDir()) })
//	}
//
// newStore must return an empty store that is independent of the ones it returned before.
package blobtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/sdk/blob"
)

// Run runs every conformance test against stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"PutGetSizes", testPutGetSizes},
		{"Overwrite", testOverwrite},
		{"FailingReaderLeavesNothing", testFailingReader},
		{"FailingReaderKeepsPrevious", testFailingReaderKeepsPrevious},
		{"CancelledPutLeavesNothing", testCancelledPut},
		{"UnfinishedPutIsInvisible", testUnfinishedPutInvisible},
		{"GetOffset", testGetOffset},
		{"NotFound", testNotFound},
		{"ListPrefix", testListPrefix},
		{"ListStopsOnCallbackError", testListCallbackError},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// data returns n pseudo-random bytes, different for each seed.
func data(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, s blob.Store, key string, b []byte) {
	t.Helper()
	n, err := s.Put(ctxT(t), key, bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(b), err)
	}
	if n != int64(len(b)) {
		t.Fatalf("Put(%q): returned %d, want %d", key, n, len(b))
	}
}

func get(t *testing.T, s blob.Store, key string, offset int64) []byte {
	t.Helper()
	rc, err := s.Get(ctxT(t), key, offset)
	if err != nil {
		t.Fatalf("Get(%q, %d): %v", key, offset, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q, %d): read: %v", key, offset, err)
	}
	return b
}

func list(t *testing.T, s blob.Store, prefix string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := s.List(ctxT(t), prefix, func(key string, size int64) error {
		if _, dup := out[key]; dup {
			t.Errorf("List(%q): key %q listed twice", prefix, key)
		}
		out[key] = size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return out
}

func wantAbsent(t *testing.T, s blob.Store, key string) {
	t.Helper()
	rc, err := s.Get(ctxT(t), key, 0)
	if err == nil {
		b, _ := io.ReadAll(rc)
		rc.Close()
		t.Fatalf("Get(%q) after a failed Put: found %d bytes, want ErrNotFound", key, len(b))
	}
	if !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Get(%q): %v, want an error wrapping ErrNotFound", key, err)
	}
	if got := list(t, s, ""); len(got) != 0 {
		t.Fatalf("List after a failed Put: %v, want nothing (no partial objects)", got)
	}
}

func testPutGetSizes(t *testing.T, s blob.Store) {
	const mib = 1 << 20
	// The last size spans two of blob.WriteBehind's windows and part of a third.
	for i, n := range []int{0, 1, 1000, mib - 1, mib, mib + 1, 3*mib + mib/2, 2*blob.WriteBehindWindow + 1} {
		key := fmt.Sprintf("sizes/obj-%d", n)
		b := data(uint64(i), n)
		put(t, s, key, b)
		if got := get(t, s, key, 0); !bytes.Equal(got, b) {
			t.Fatalf("Get(%q): %d bytes differ from the %d put", key, len(got), n)
		}
		if got := list(t, s, key); got[key] != int64(n) {
			t.Fatalf("List(%q): size %d, want %d", key, got[key], n)
		}
	}
}

func testOverwrite(t *testing.T, s blob.Store) {
	put(t, s, "o/key", data(1, 5000))
	b := data(2, 300)
	put(t, s, "o/key", b)
	if got := get(t, s, "o/key", 0); !bytes.Equal(got, b) {
		t.Fatalf("after overwrite: got %d bytes, want the second object's %d", len(got), len(b))
	}
	if got := list(t, s, "o/"); len(got) != 1 || got["o/key"] != 300 {
		t.Fatalf("List after overwrite: %v", got)
	}
}

// failingReader returns n bytes of data, then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, f.err
	}
	return n, err
}

var errMidway = errors.New("blobtest: reader failed midway")

func testFailingReader(t *testing.T, s blob.Store) {
	r := &failingReader{r: bytes.NewReader(data(3, 3<<20/2)), err: errMidway}
	if _, err := s.Put(ctxT(t), "f/key", r); err == nil {
		t.Fatal("Put with a reader that fails midway: nil error, want the reader's error")
	}
	wantAbsent(t, s, "f/key")
}

func testFailingReaderKeepsPrevious(t *testing.T, s blob.Store) {
	old := data(4, 2000)
	put(t, s, "f/key", old)
	r := &failingReader{r: bytes.NewReader(data(5, 2<<20)), err: errMidway}
	if _, err := s.Put(ctxT(t), "f/key", r); err == nil {
		t.Fatal("Put with a failing reader: nil error")
	}
	if got := get(t, s, "f/key", 0); !bytes.Equal(got, old) {
		t.Fatalf("a failed Put changed the previous object: %d bytes, want the old %d", len(got), len(old))
	}
}

// cancellingReader cancels its context after the first read, then keeps returning data.
type cancellingReader struct {
	r      io.Reader
	cancel context.CancelFunc
	reads  int
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	c.reads++
	if c.reads == 2 {
		c.cancel()
		time.Sleep(50 * time.Millisecond) // let the cancellation reach a remote store
	}
	return c.r.Read(p)
}

func testCancelledPut(t *testing.T, s blob.Store) {
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	r := &cancellingReader{r: bytes.NewReader(data(6, 4<<20)), cancel: cancel}
	if _, err := s.Put(ctx, "c/key", r); err == nil {
		t.Fatal("Put whose context was cancelled midway: nil error")
	}
	wantAbsent(t, s, "c/key")
}

// gatedReader returns half its data, signals, then blocks until released and fails.
type gatedReader struct {
	r       io.Reader
	half    int
	n       int
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.n >= g.half {
		g.once.Do(func() { close(g.reached) })
		<-g.release
		return 0, errMidway
	}
	if len(p) > g.half-g.n {
		p = p[:g.half-g.n]
	}
	k, err := g.r.Read(p)
	g.n += k
	return k, err
}

func testUnfinishedPutInvisible(t *testing.T, s blob.Store) {
	g := &gatedReader{r: bytes.NewReader(data(7, 4<<20)), half: 3 << 20, reached: make(chan struct{}), release: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Put(ctxT(t), "u/key", g)
		errc <- err
	}()
	select {
	case <-g.reached:
	case err := <-errc:
		t.Fatalf("Put returned before reading its data: %v", err)
	}
	// The data read so far may be anywhere inside the store, but not visible.
	time.Sleep(100 * time.Millisecond)
	if got := list(t, s, ""); len(got) != 0 {
		t.Errorf("List during an unfinished Put: %v, want nothing", got)
	}
	if _, err := s.Get(ctxT(t), "u/key", 0); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Get during an unfinished Put: %v, want ErrNotFound", err)
	}
	close(g.release)
	if err := <-errc; err == nil {
		t.Fatal("Put with a failing reader: nil error")
	}
	wantAbsent(t, s, "u/key")
}

func testGetOffset(t *testing.T, s blob.Store) {
	b := data(8, 2<<20+123)
	put(t, s, "g/key", b)
	for _, off := range []int64{0, 1, 1000, 1 << 20, 1<<20 + 7, int64(len(b)) - 1, int64(len(b))} {
		if got := get(t, s, "g/key", off); !bytes.Equal(got, b[off:]) {
			t.Fatalf("Get at offset %d: %d bytes, want the last %d", off, len(got), len(b)-int(off))
		}
	}
	// A reader closed early must not disturb later calls.
	rc, err := s.Get(ctxT(t), "g/key", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if got := get(t, s, "g/key", 5); !bytes.Equal(got, b[5:]) {
		t.Fatal("Get after an early Close: wrong bytes")
	}
}

func testNotFound(t *testing.T, s blob.Store) {
	if _, err := s.Get(ctxT(t), "missing/key", 0); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Get of a missing key: %v, want an error wrapping ErrNotFound", err)
	}
	if err := s.Delete(ctxT(t), "missing/key"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Delete of a missing key: %v, want an error wrapping ErrNotFound", err)
	}
	if got := list(t, s, "missing/"); len(got) != 0 {
		t.Errorf("List of an empty prefix: %v", got)
	}
}

func testListPrefix(t *testing.T, s blob.Store) {
	// No key is also a folder of another key ("a/b" beside "a/b/c"): file-system stores
	// cannot hold both, and nightjar's layout never needs it.
	keys := map[string]int{"a/b/c": 1, "a/bc": 2, "a/b/d/e": 3, "ab": 4, "b/x": 5}
	for k, n := range keys {
		put(t, s, k, data(uint64(n), n*10))
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a/b/c", "a/b/d/e", "a/bc", "ab", "b/x"}},
		{"a", []string{"a/b/c", "a/b/d/e", "a/bc", "ab"}},
		{"a/", []string{"a/b/c", "a/b/d/e", "a/bc"}},
		{"a/b", []string{"a/b/c", "a/b/d/e", "a/bc"}},
		{"a/b/", []string{"a/b/c", "a/b/d/e"}},
		{"a/b/d/", []string{"a/b/d/e"}},
		{"b/x", []string{"b/x"}},
		{"c", nil},
	}
	for _, tc := range cases {
		got := list(t, s, tc.prefix)
		var names []string
		for k, size := range got {
			names = append(names, k)
			if want := int64(keys[k] * 10); size != want {
				t.Errorf("List(%q): %s has size %d, want %d", tc.prefix, k, size, want)
			}
		}
		sort.Strings(names)
		if fmt.Sprint(names) != fmt.Sprint(tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.prefix, names, tc.want)
		}
	}
}

func testListCallbackError(t *testing.T, s blob.Store) {
	for i := range 5 {
		put(t, s, fmt.Sprintf("l/%d", i), []byte("x"))
	}
	stop := errors.New("stop")
	calls := 0
	err := s.List(ctxT(t), "l/", func(string, int64) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List whose callback fails: %v, want the callback's error", err)
	}
	if calls != 1 {
		t.Fatalf("List called the callback %d times after it failed, want 1", calls)
	}
}

func testDelete(t *testing.T, s blob.Store) {
	put(t, s, "d/a/1", []byte("one"))
	put(t, s, "d/a/2", []byte("two"))
	put(t, s, "d/b", []byte("three"))
	if err := s.Delete(ctxT(t), "d/a/1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctxT(t), "d/a/1", 0); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	got := list(t, s, "d/")
	if len(got) != 2 || got["d/a/2"] != 3 || got["d/b"] != 5 {
		t.Fatalf("List after Delete: %v", got)
	}
	if err := s.Delete(ctxT(t), "d/a/2"); err != nil {
		t.Fatal(err)
	}
	// The store still works for keys below a prefix that was emptied.
	put(t, s, "d/a/3", []byte("four"))
	if got := get(t, s, "d/a/3", 0); string(got) != "four" {
		t.Fatalf("Get after re-creating below an emptied prefix: %q", got)
	}
}

func testInvalidKeys(t *testing.T, s blob.Store) {
	for _, key := range []string{"", "/abs", "../escape", "a/../../b", "a//b", "a/./b"} {
		if _, err := s.Put(ctxT(t), key, bytes.NewReader([]byte("x"))); err == nil {
			t.Errorf("Put(%q): nil error, want an invalid-key error", key)
		}
	}
	if got := list(t, s, ""); len(got) != 0 {
		t.Fatalf("invalid keys stored something: %v", got)
	}
}

func testConcurrent(t *testing.T, s blob.Store) {
	const workers, per = 8, 4
	objs := map[string][]byte{}
	for w := range workers {
		for i := range per {
			objs[fmt.Sprintf("conc/w%d/obj%d", w, i)] = data(uint64(100+w*per+i), 200_000+w*1000+i)
		}
	}
	run := func(what string, fn func(key string, b []byte) error) {
		var wg sync.WaitGroup
		errs := make(chan error, len(objs))
		for key, b := range objs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(key, b); err != nil {
					errs <- fmt.Errorf("%s %s: %w", what, key, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	ctx := ctxT(t)
	run("put", func(key string, b []byte) error {
		_, err := s.Put(ctx, key, bytes.NewReader(b))
		return err
	})
	run("get+list", func(key string, b []byte) error {
		rc, err := s.Get(ctx, key, 0)
		if err != nil {
			return err
		}
		defer rc.Close()
		got, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, b) {
			return errors.New("wrong bytes")
		}
		n := 0
		if err := s.List(ctx, "conc/", func(string, int64) error { n++; return nil }); err != nil {
			return err
		}
		if n != len(objs) {
			return fmt.Errorf("listed %d objects, want %d", n, len(objs))
		}
		return nil
	})
	run("delete", func(key string, _ []byte) error { return s.Delete(ctx, key) })
	if got := list(t, s, ""); len(got) != 0 {
		t.Fatalf("after deleting everything: %v", got)
	}
}
