package sqlitecopy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Snapshot is a checked copy of a database in scratch space. Remove it when done.
type Snapshot struct {
	Path     string // the copy
	Info     Info
	Check    CheckResult
	Duration time.Duration // of the copy step alone
	dir      string
}

// Meta renders what a manifest records about the copy.
func (s *Snapshot) Meta() map[string]string {
	m := s.Info.Meta()
	for k, v := range s.Check.Meta() {
		m[k] = v
	}
	m["copy_seconds"] = strconv.FormatFloat(s.Duration.Seconds(), 'f', 3, 64)
	return m
}

// Remove deletes the copy and its folder.
func (s *Snapshot) Remove() error {
	if s == nil || s.dir == "" {
		return nil
	}
	return os.RemoveAll(s.dir)
}

// Take copies the database at src into a new folder below scratch and checks the copy at
// level. A copy that fails its check is an error wrapping ErrDamaged. On any error nothing
// is left in scratch.
func Take(ctx context.Context, src, scratch string, opt Options, level Level) (_ *Snapshot, err error) {
	if err := CheckSource(src); err != nil {
		return nil, err
	}
	if scratch == "" {
		scratch = os.TempDir()
	}
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return nil, fmt.Errorf("scratch folder %s cannot be created: %w", scratch, err)
	}
	removeStale(scratch, time.Now().Add(-StaleAfter))
	dir, err := os.MkdirTemp(scratch, "sqlite-copy-*")
	if err != nil {
		return nil, fmt.Errorf("scratch folder %s is not writable: %w", scratch, err)
	}
	s := &Snapshot{Path: filepath.Join(dir, filepath.Base(src)), dir: dir}
	defer func() {
		if err != nil {
			s.Remove()
		}
	}()
	start := time.Now()
	if s.Info, err = Copy(ctx, src, s.Path, opt); err != nil {
		return nil, err
	}
	s.Duration = time.Since(start)
	if s.Check, err = Check(ctx, s.Path, level); err != nil {
		return nil, fmt.Errorf("copy of %s: %w", src, err)
	}
	return s, nil
}

// StaleAfter is the age after which a copy left in scratch by a killed run is removed by the
// next copy. No copy runs for a day, and runs of one pipeline never overlap (state_dir lock).
const StaleAfter = 24 * time.Hour

// removeStale removes copies and check files older than cutoff from scratch, best effort.
func removeStale(scratch string, cutoff time.Time) {
	for _, pattern := range []string{"sqlite-copy-*", "sqlite-check-*"} {
		matches, _ := filepath.Glob(filepath.Join(scratch, pattern))
		for _, m := range matches {
			if info, err := os.Lstat(m); err == nil && info.IsDir() && info.ModTime().Before(cutoff) {
				os.RemoveAll(m)
			}
		}
	}
}
