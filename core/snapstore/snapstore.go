// Package snapstore turns any blob.Store into a core.Sink: it owns the snapshot layout
// (<pipeline>/<snapshot-id>/<object>) and the commit protocol (the manifest is written last,
// after every object it names has been checked to be there with the right size; a snapshot
// without a manifest is incomplete and never listed).
package snapstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/sdk/blob"
)

// Store is a core.Sink and core.LeftoverSink on top of a blob.Store.
type Store struct {
	blobs    blob.Store
	pipeline string
}

// New returns the snapshot store of pipeline inside blobs.
func New(blobs blob.Store, pipeline string) *Store {
	return &Store{blobs: blobs, pipeline: pipeline}
}

// Blobs returns the underlying blob store.
func (s *Store) Blobs() blob.Store { return s.blobs }

func (s *Store) key(id core.SnapshotID, object string) string {
	return path.Join(s.pipeline, string(id), object)
}

// checkObject refuses object names that are not one plain file name: path.Join would
// otherwise clean "../x" into a key outside the snapshot's folder.
func checkObject(object string) error {
	if object == "" || object == "." || object == ".." || strings.ContainsAny(object, "/\\") {
		return fmt.Errorf("invalid object name %q: expected a file name without '/'", object)
	}
	return nil
}

// Put stores one object of snapshot id.
func (s *Store) Put(ctx context.Context, id core.SnapshotID, object string, r io.Reader) (core.Stored, error) {
	if object == core.ManifestName {
		return core.Stored{}, fmt.Errorf("object name %q is reserved", object)
	}
	if err := checkObject(object); err != nil {
		return core.Stored{}, err
	}
	key := s.key(id, object)
	if err := blob.ValidateKey(key); err != nil {
		return core.Stored{}, err
	}
	n, err := s.blobs.Put(ctx, key, r)
	if err != nil {
		return core.Stored{}, fmt.Errorf("put %s: %w", key, err)
	}
	return core.Stored{Size: n}, nil
}

// Commit checks that every artifact the manifest names is stored with its recorded size,
// then stores the manifest. Only then is the snapshot complete.
func (s *Store) Commit(ctx context.Context, m *core.Manifest) error {
	sizes := map[string]int64{}
	prefix := s.key(m.ID, "") + "/"
	err := s.blobs.List(ctx, prefix, func(key string, size int64) error {
		sizes[strings.TrimPrefix(key, prefix)] = size
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit %s: list objects: %w", m.ID, err)
	}
	if _, exists := sizes[core.ManifestName]; exists {
		return fmt.Errorf("commit %s: a manifest already exists", m.ID)
	}
	for _, a := range m.Artifacts {
		got, ok := sizes[a.Object]
		if !ok {
			return fmt.Errorf("commit %s: object %s is missing; refusing to write a manifest that names it", m.ID, a.Object)
		}
		if got != a.StoredSize {
			return fmt.Errorf("commit %s: object %s has %d bytes in the store, %d were sent; refusing to commit", m.ID, a.Object, got, a.StoredSize)
		}
	}
	b, err := m.Encode()
	if err != nil {
		return fmt.Errorf("commit %s: %w", m.ID, err)
	}
	if _, err := s.blobs.Put(ctx, s.key(m.ID, core.ManifestName), bytes.NewReader(b)); err != nil {
		return fmt.Errorf("commit %s: put manifest: %w", m.ID, err)
	}
	return nil
}

// folders lists the snapshot folders of the pipeline: id → object names.
func (s *Store) folders(ctx context.Context) (map[core.SnapshotID][]string, error) {
	out := map[core.SnapshotID][]string{}
	prefix := s.pipeline + "/"
	err := s.blobs.List(ctx, prefix, func(key string, size int64) error {
		rest := strings.TrimPrefix(key, prefix)
		id, object, ok := strings.Cut(rest, "/")
		if !ok {
			return nil
		}
		if _, err := core.ParseSnapshotID(id); err != nil {
			return nil // not ours
		}
		out[core.SnapshotID(id)] = append(out[core.SnapshotID(id)], object)
		return nil
	})
	return out, err
}

// List returns the complete snapshots (those with a manifest), newest first.
func (s *Store) List(ctx context.Context) ([]*core.Manifest, error) {
	folders, err := s.folders(ctx)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []*core.Manifest
	for id, objects := range folders {
		if !hasManifest(objects) {
			continue
		}
		m, err := s.manifest(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	core.SortNewestFirst(out)
	return out, nil
}

func hasManifest(objects []string) bool {
	for _, o := range objects {
		if o == core.ManifestName {
			return true
		}
	}
	return false
}

func (s *Store) manifest(ctx context.Context, id core.SnapshotID) (*core.Manifest, error) {
	rc, err := s.blobs.Get(ctx, s.key(id, core.ManifestName), 0)
	if err != nil {
		return nil, fmt.Errorf("read manifest of %s: %w", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read manifest of %s: %w", id, err)
	}
	m, err := core.DecodeManifest(b)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", id, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("snapshot %s: manifest names id %s", id, m.ID)
	}
	return m, nil
}

// Open streams an object of a snapshot.
func (s *Store) Open(ctx context.Context, id core.SnapshotID, object string) (io.ReadCloser, error) {
	if err := checkObject(object); err != nil {
		return nil, fmt.Errorf("open %s: %w", id, err)
	}
	rc, err := s.blobs.Get(ctx, s.key(id, object), 0)
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", id, object, err)
	}
	return rc, nil
}

// Delete removes the manifest first, so the snapshot stops being complete at once, then
// its objects.
func (s *Store) Delete(ctx context.Context, id core.SnapshotID) error {
	if err := s.blobs.Delete(ctx, s.key(id, core.ManifestName)); err != nil && !errors.Is(err, blob.ErrNotFound) {
		return fmt.Errorf("delete %s: manifest: %w", id, err)
	}
	return s.DeleteLeftover(ctx, id)
}

// Leftovers lists snapshot folders without a manifest.
func (s *Store) Leftovers(ctx context.Context) ([]core.Leftover, error) {
	folders, err := s.folders(ctx)
	if err != nil {
		return nil, fmt.Errorf("list leftovers: %w", err)
	}
	var out []core.Leftover
	for id, objects := range folders {
		if !hasManifest(objects) {
			out = append(out, core.Leftover{ID: id, Objects: len(objects)})
		}
	}
	return out, nil
}

// DeleteLeftover removes every object of an incomplete snapshot folder.
func (s *Store) DeleteLeftover(ctx context.Context, id core.SnapshotID) error {
	prefix := s.key(id, "") + "/"
	var keys []string
	if err := s.blobs.List(ctx, prefix, func(key string, _ int64) error {
		keys = append(keys, key)
		return nil
	}); err != nil {
		return fmt.Errorf("delete %s: list: %w", id, err)
	}
	for _, k := range keys {
		if err := s.blobs.Delete(ctx, k); err != nil && !errors.Is(err, blob.ErrNotFound) {
			return fmt.Errorf("delete %s: %w", k, err)
		}
	}
	return nil
}
