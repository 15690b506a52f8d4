package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitecopy"
)

// sidecars are the files SQLite keeps beside a database; a stale one beside a restored
// database would be replayed into it, so they count as part of the database.
var sidecars = []string{"-wal", "-shm", "-journal"}

// checkLevel is the check a restored or verified copy gets: the configured one, but never
// none (restore and verify are where damage must show).
func (s *Source) checkLevel() sqlitecopy.Level {
	if s.opt.Integrity == sqlitecopy.LevelOff {
		return sqlitecopy.LevelQuick
	}
	return s.opt.Integrity
}

// Restore writes the database to dir/<name>: into a temporary file beside it, checked with
// an integrity check, then renamed into place. It never replaces an existing database (or
// its -wal, -shm or -journal file) unless opt.Force; with Force those sidecars are removed
// so they cannot be replayed into the restored database.
func (s *Source) Restore(ctx context.Context, r io.Reader, dir string, opt core.RestoreOptions) (err error) {
	target := filepath.Join(dir, s.name)
	if !opt.Force {
		for _, suffix := range append([]string{""}, sidecars...) {
			if _, err := os.Lstat(target + suffix); err == nil {
				return fmt.Errorf("restore %q: %s exists; choose another --to or pass --force to replace it", s.name, target+suffix)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("restore %q: %w", s.name, err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("restore %q: %w", s.name, err)
	}
	tmp, err := os.CreateTemp(dir, ".nightjar-restore-"+s.name+"-*")
	if err != nil {
		return fmt.Errorf("restore %q: %w", s.name, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = io.Copy(tmp, r); err != nil {
		return fmt.Errorf("restore %q: write %s: %w", s.name, tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("restore %q: fsync %s: %w", s.name, tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("restore %q: %w", s.name, err)
	}
	if err = os.Chmod(tmp.Name(), 0o640); err != nil {
		return fmt.Errorf("restore %q: %w", s.name, err)
	}
	res, err := sqlitecopy.Check(ctx, tmp.Name(), s.checkLevel())
	if err != nil {
		return fmt.Errorf("restore %q: the restored database is damaged, %s was not written: %w", s.name, target, err)
	}
	if opt.Force {
		for _, suffix := range sidecars {
			if err = os.Remove(target + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("restore %q: remove the old %s: %w", s.name, target+suffix, err)
			}
		}
		err = nil
	} else if _, err = os.Lstat(target); err == nil {
		// Appeared while we wrote: still never replace it.
		return fmt.Errorf("restore %q: %s appeared during the restore; not replacing it", s.name, target)
	}
	if err = os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("restore %q: %w", s.name, err)
	}
	s.log.Info("database restored", "path", target, "integrity", res.Result)
	return syncDir(dir)
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

// Check writes the raw artifact to a temporary file in scratch and integrity-checks it.
func (s *Source) Check(ctx context.Context, r io.Reader) error {
	if err := os.MkdirAll(s.opt.ScratchDir, 0o700); err != nil {
		return fmt.Errorf("scratch folder %s cannot be created: %w", s.opt.ScratchDir, err)
	}
	dir, err := os.MkdirTemp(s.opt.ScratchDir, "sqlite-check-*")
	if err != nil {
		return fmt.Errorf("scratch folder %s is not writable: %w", s.opt.ScratchDir, err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, s.name)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if _, err := sqlitecopy.Check(ctx, path, s.checkLevel()); err != nil {
		return err
	}
	return nil
}
