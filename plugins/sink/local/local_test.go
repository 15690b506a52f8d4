package local

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/nightjar-backup/nightjar/sdk/blob"
)

type errReader struct{ after int }

func (e *errReader) Read(p []byte) (int, error) {
	if e.after <= 0 {
		return 0, errors.New("source broke")
	}
	n := min(len(p), e.after)
	for i := range p[:n] {
		p[i] = 'x'
	}
	e.after -= n
	return n, nil
}

func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := NewStore(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Put(ctx, "p/id/a.tar", strings.NewReader("hello"))
	if err != nil || n != 5 {
		t.Fatalf("put: %d %v", n, err)
	}
	// A failed Put leaves nothing, and the previous object unchanged.
	if _, err := s.Put(ctx, "p/id/a.tar", &errReader{after: 3 << 20}); err == nil || !strings.Contains(err.Error(), "source broke") {
		t.Fatalf("put from a failing reader: %v", err)
	}
	if _, err := s.Put(ctx, "p/id/b.tar", &errReader{after: 10}); err == nil {
		t.Fatal("put from a failing reader succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Put(cctx, "p/id/c.tar", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("put with a cancelled context: %v", err)
	}
	var keys []string
	if err := s.List(ctx, "p/", func(k string, size int64) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "p/id/a.tar" {
		t.Fatalf("list: %v", keys)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "store", "p", "id"))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	rc, err := s.Get(ctx, "p/id/a.tar", 2)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "llo" {
		t.Fatalf("get at offset 2: %q", b)
	}
	if _, err := s.Get(ctx, "p/id/missing", 0); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	for _, bad := range []string{"../escape", "/abs", "a/../../b", "", "a//b"} {
		if _, err := s.Put(ctx, bad, strings.NewReader("x")); err == nil {
			t.Errorf("put %q accepted", bad)
		}
	}
	if err := s.Delete(ctx, "p/id/a.tar"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "store", "p")); !os.IsNotExist(err) {
		t.Errorf("empty folders left after delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "store")); err != nil {
		t.Errorf("delete removed the store's root: %v", err)
	}
	if err := s.Delete(ctx, "p/id/a.tar"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
}
