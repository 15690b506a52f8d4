package snapstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/sdk/blob"
)

// memStore is an in-memory blob.Store (a unit-test fake).
type memStore struct {
	mu      sync.Mutex
	objects map[string][]byte
}

func newMemStore() *memStore { return &memStore{objects: map[string][]byte{}} }

func (m *memStore) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[key] = b
	return int64(len(b)), nil
}

func (m *memStore) Get(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objects[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, blob.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b[offset:])), nil
}

func (m *memStore) List(ctx context.Context, prefix string, fn func(string, int64) error) error {
	m.mu.Lock()
	keys := make([]string, 0, len(m.objects))
	for k := range m.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sizes := map[string]int64{}
	for _, k := range keys {
		sizes[k] = int64(len(m.objects[k]))
	}
	m.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn(k, sizes[k]); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Delete(ctx context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objects[key]; !ok {
		return blob.ErrNotFound
	}
	delete(m.objects, key)
	return nil
}

func manifest(id core.SnapshotID, objects map[string]int64) *core.Manifest {
	m := &core.Manifest{Format: core.ManifestFormat, ID: id, Pipeline: "p", Host: "h", Started: id.Time(), Finished: id.Time()}
	for name, size := range objects {
		m.Artifacts = append(m.Artifacts, core.Artifact{Name: name, Object: name, StoredSize: size, Size: size})
	}
	return m
}

func put(t *testing.T, s *Store, id core.SnapshotID, object, body string) {
	t.Helper()
	st, err := s.Put(context.Background(), id, object, strings.NewReader(body))
	if err != nil || st.Size != int64(len(body)) {
		t.Fatalf("put %s: %v %v", object, st, err)
	}
}

func TestCommitRefusesMissingOrWrongObjects(t *testing.T) {
	ctx := context.Background()
	id := core.NewSnapshotID(time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC))
	tests := []struct {
		name    string
		stored  map[string]string
		claimed map[string]int64
		want    string
	}{
		{"object missing", map[string]string{"a.tar": "aaaa"}, map[string]int64{"a.tar": 4, "b.db": 2}, "object b.db is missing"},
		{"object shorter", map[string]string{"a.tar": "aaa"}, map[string]int64{"a.tar": 4}, "has 3 bytes in the store, 4 were sent"},
		{"object longer", map[string]string{"a.tar": "aaaaa"}, map[string]int64{"a.tar": 4}, "has 5 bytes in the store, 4 were sent"},
		{"ok", map[string]string{"a.tar": "aaaa", "b.db": "bb"}, map[string]int64{"a.tar": 4, "b.db": 2}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			blobs := newMemStore()
			s := New(blobs, "p")
			for k, v := range tc.stored {
				put(t, s, id, k, v)
			}
			err := s.Commit(ctx, manifest(id, tc.claimed))
			ms, lerr := s.List(ctx)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if tc.want == "" {
				if err != nil || len(ms) != 1 || ms[0].ID != id {
					t.Fatalf("commit: %v, listed %d", err, len(ms))
				}
				if err := s.Commit(ctx, manifest(id, tc.claimed)); err == nil || !strings.Contains(err.Error(), "already exists") {
					t.Fatalf("a second commit of the same id: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
			if len(ms) != 0 {
				t.Fatal("a refused commit is listed")
			}
			if _, ok := blobs.objects["p/"+string(id)+"/"+core.ManifestName]; ok {
				t.Fatal("a refused commit wrote a manifest")
			}
		})
	}
}

func TestListShowsOnlyCompleteSnapshots(t *testing.T) {
	ctx := context.Background()
	blobs := newMemStore()
	s := New(blobs, "p")
	t0 := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	var ids []core.SnapshotID
	for i := 0; i < 3; i++ {
		id := core.NewSnapshotID(t0.Add(time.Duration(i) * 24 * time.Hour))
		ids = append(ids, id)
		put(t, s, id, "a.tar", "data")
		if i != 1 { // the second run was killed before its manifest
			if err := s.Commit(ctx, manifest(id, map[string]int64{"a.tar": 4})); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Another pipeline and foreign keys in the same store are ignored.
	New(blobs, "other").Put(ctx, ids[0], "x", strings.NewReader("x"))
	blobs.objects["p/not-a-snapshot/file"] = []byte("x")
	blobs.objects["p/loose-file"] = []byte("x")

	ms, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].ID != ids[2] || ms[1].ID != ids[0] {
		t.Fatalf("want [%s %s], got %v", ids[2], ids[0], ms)
	}
	left, err := s.Leftovers(ctx)
	if err != nil || len(left) != 1 || left[0].ID != ids[1] || left[0].Objects != 1 {
		t.Fatalf("leftovers: %v %v", left, err)
	}
	if err := s.DeleteLeftover(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	ms, _ = s.List(ctx)
	if len(ms) != 1 || ms[0].ID != ids[2] {
		t.Fatalf("after delete: %v", ms)
	}
	for k := range blobs.objects {
		if strings.Contains(k, string(ids[0])) && strings.HasPrefix(k, "p/") || strings.Contains(k, string(ids[1])) {
			t.Errorf("left behind: %s", k)
		}
	}
}

func TestManifestIsChecked(t *testing.T) {
	ctx := context.Background()
	blobs := newMemStore()
	s := New(blobs, "p")
	id := core.NewSnapshotID(time.Now())
	other := core.NewSnapshotID(time.Now().Add(time.Hour))
	b, _ := manifest(other, nil).Encode()
	blobs.objects["p/"+string(id)+"/"+core.ManifestName] = b
	if _, err := s.List(ctx); err == nil || !strings.Contains(err.Error(), "manifest names id") {
		t.Fatalf("a manifest under the wrong folder: %v", err)
	}
	blobs.objects["p/"+string(id)+"/"+core.ManifestName] = []byte(`{"format":"something/v9"}`)
	if _, err := s.List(ctx); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Fatalf("a manifest of another format: %v", err)
	}
}

func TestPutRefusesReservedAndBadNames(t *testing.T) {
	s := New(newMemStore(), "p")
	id := core.NewSnapshotID(time.Now())
	for _, name := range []string{core.ManifestName, "../x", "", "a//b"} {
		if _, err := s.Put(context.Background(), id, name, strings.NewReader("x")); err == nil {
			t.Errorf("put %q was accepted", name)
		}
	}
	var nf = errors.Is(s.Delete(context.Background(), id), blob.ErrNotFound)
	if nf {
		t.Error("deleting a missing snapshot should not be an error")
	}
}
