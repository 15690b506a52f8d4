// Package local is the local-directory sink: a blob.Store in a folder, with atomic writes
// (temporary file, fsync, rename, fsync of the folder), used through core's snapshot layout.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/snapstore"
	"github.com/nightjar-backup/nightjar/plugins/internal/ctxio"
	"github.com/nightjar-backup/nightjar/sdk/blob"
)

// Register adds the local sink to r.
func Register(r *core.Registry) {
	r.AddSink(core.SinkPlugin{
		Type: "local",
		Doc:  "Stores snapshots in a local folder: <path>/<pipeline>/<snapshot-id>/<object>.",
		Fields: []core.Field{
			{Name: "path", Kind: core.KindPath, Required: true, Doc: "The folder that holds the snapshots; created if missing.", Example: "/srv/backups"},
		},
		New: func(_ context.Context, c *core.Component, env core.Env) (core.Sink, error) {
			st, err := NewStore(c.String("path"))
			if err != nil {
				return nil, err
			}
			return snapstore.New(st, env.Pipeline), nil
		},
	})
}

// tmpPrefix marks objects being written; List skips them.
const tmpPrefix = ".nightjar-tmp-"

// Store is a blob.Store in a folder.
type Store struct {
	root string
}

// NewStore returns a store rooted at dir, creating dir if needed.
func NewStore(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("local store: empty path")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	return &Store{root: dir}, nil
}

func (s *Store) path(key string) (string, error) {
	if err := blob.ValidateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put writes key atomically: a temporary file in the same folder, fsync, rename, fsync of
// the folder. On any error the temporary file is removed.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (n int64, err error) {
	p, err := s.path(key)
	if err != nil {
		return 0, err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	n, err = blob.CopyToFile(f, ctxio.Reader(ctx, r))
	if err != nil {
		return n, fmt.Errorf("put %s: %w", key, err)
	}
	if err = f.Sync(); err != nil {
		return n, fmt.Errorf("put %s: fsync: %w", key, err)
	}
	if err = f.Close(); err != nil {
		return n, fmt.Errorf("put %s: %w", key, err)
	}
	if err = os.Chmod(f.Name(), 0o640); err != nil {
		return n, fmt.Errorf("put %s: %w", key, err)
	}
	if err = os.Rename(f.Name(), p); err != nil {
		return n, fmt.Errorf("put %s: %w", key, err)
	}
	return n, syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// Get opens key at offset.
func (s *Store) Get(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get %s: %w", key, blob.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("get %s: seek: %w", key, err)
		}
	}
	return f, nil
}

// List walks the folder below prefix; temporary files are skipped.
func (s *Store) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	// Walk only the deepest folder that the prefix names completely.
	start := s.root
	if i := strings.LastIndex(prefix, "/"); i > 0 {
		start = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
	}
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		return fn(key, info.Size())
	})
	if err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	return nil
}

// Delete removes key and then any folders it leaves empty.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", key, blob.ErrNotFound)
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	for dir := filepath.Dir(p); dir != s.root && strings.HasPrefix(dir, s.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil { // not empty (or gone): stop
			break
		}
	}
	return nil
}
