package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nightjar-backup/nightjar/sdk/blob"
)

// version is set with -ldflags "-X main.version=..." by release builds.
var version = "0.1.0"

// tmpPrefix marks objects still being written. List skips them: an unfinished or failed Put
// must never be listed.
const tmpPrefix = ".folder-tmp-"

// Store keeps each object in a file below root. It implements blob.Store, blob.Describer
// and blob.Configurable.
type Store struct {
	root string
}

// Describe declares the sink type and its config keys; nightjar validates users' configs
// against them before Configure is called.
func (s *Store) Describe() blob.Description {
	return blob.Description{
		Name:    "folder",
		Version: version,
		Doc:     "Example external sink: keeps snapshots in a local folder (<root>/<pipeline>/<snapshot-id>/<object>).",
		Fields: []blob.Field{
			{Name: "root", Kind: blob.KindPath, Required: true, Doc: "The folder that holds the objects; created if missing.", Example: "/srv/folder"},
		},
	}
}

// Configure receives the validated config once, before any other call.
func (s *Store) Configure(_ context.Context, cfg blob.Config) error {
	root := cfg.String("root")
	if !filepath.IsAbs(root) {
		return fmt.Errorf("root %q: expected an absolute path", root)
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	s.root = root
	s.sweepTemp(time.Now().Add(-staleTemp))
	return nil
}

// staleTemp is the age after which a temporary file is taken to be left by a Put that
// never finished (the process was killed); no upload runs that long without writing.
const staleTemp = 24 * time.Hour

// sweepTemp removes temporary files not modified since before: List never shows them, so
// nothing else would ever remove them.
func (s *Store) sweepTemp(before time.Time) {
	filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		if info, err := d.Info(); err == nil && info.ModTime().Before(before) {
			if os.Remove(p) == nil {
				slog.Info("removed a stale temporary file", "path", p)
			}
		}
		return nil
	})
}

func (s *Store) path(key string) (string, error) {
	if err := blob.ValidateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put writes to a temporary file and renames it into place only after r reached io.EOF.
// The SDK returns io.EOF only once the data's size and sha256 match what nightjar sent, so
// an object is visible only when complete and verified.
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
	// CopyToFile: the disk writes while the data still arrives (directly from its buffers
	// on ext4 and XFS), so the fsync below waits for the last few MiB only.
	n, err = blob.CopyToFile(f, r)
	if err != nil {
		return n, fmt.Errorf("put %s: %w", key, err)
	}
	if err = ctx.Err(); err != nil {
		return n, fmt.Errorf("put %s: %w", key, err)
	}
	if err = f.Sync(); err != nil {
		return n, fmt.Errorf("put %s: fsync: %w", key, err)
	}
	if err = f.Close(); err != nil {
		return n, fmt.Errorf("put %s: %w", key, err)
	}
	if err = os.Rename(f.Name(), p); err != nil {
		return n, fmt.Errorf("put %s: %w", key, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		err = d.Sync()
		d.Close()
	}
	return n, err
}

// Get opens key at offset. A missing key must wrap blob.ErrNotFound.
func (s *Store) Get(_ context.Context, key string, offset int64) (io.ReadCloser, error) {
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
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return f, nil
}

// List calls fn for every complete object whose key starts with prefix (a plain string
// prefix, not a folder: "a/b" matches "a/bc/d").
func (s *Store) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
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
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted meanwhile
		}
		if err != nil {
			return err
		}
		return fn(key, info.Size())
	})
	if err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	return nil
}

// Delete removes key and the folders it leaves empty. A missing key wraps blob.ErrNotFound.
func (s *Store) Delete(_ context.Context, key string) error {
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
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}
