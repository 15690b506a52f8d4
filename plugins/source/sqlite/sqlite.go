// Package sqlite is the SQLite source: a consistent copy of a live database, made in one
// read transaction (a page copy, the online backup API, or VACUUM INTO) into scratch_dir,
// and streamed while SQLite checks it. The database itself is only read: in WAL mode
// writers are never blocked, and no checkpoint is forced.
package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/plugins/internal/ctxio"
	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitecopy"
)

// Register adds the sqlite source to r.
func Register(r *core.Registry) {
	r.AddSource(core.SourcePlugin{
		Type: "sqlite",
		Doc: "A consistent copy of a live SQLite database (WAL or rollback journal), made page for page " +
			"in one read transaction (writers in WAL mode are never blocked), copied into scratch_dir, " +
			"and stored as <name> while SQLite checks the copy. The database is only read: no checkpoint, no schema change.",
		Fields: []core.Field{
			{Name: "path", Kind: core.KindPath, Required: true, Doc: "The database file.", Example: "/data/josh.db"},
			{Name: "method", Kind: core.KindString, Default: string(sqlitecopy.MethodBackup), Enum: []string{"backup", "vacuum"},
				Doc: "backup: a page-for-page copy (of the file and the WAL's committed frames, or where that cannot be vouched for, with SQLite's online backup API). vacuum: VACUUM INTO, a rebuilt and defragmented copy (slower, often smaller)."},
			{Name: "integrity", Kind: core.KindString, Default: string(sqlitecopy.LevelFull), Enum: []string{"full", "quick", "off"},
				Doc: "Check of the copy, run while it is streamed: full is PRAGMA integrity_check, quick is PRAGMA quick_check. A damaged copy fails the run and commits nothing."},
			{Name: "busy_timeout", Kind: core.KindDuration, Default: sqlitecopy.DefaultBusyTimeout,
				Doc: "How long to wait for a lock another process holds (in rollback-journal mode a writer's commit blocks readers) before the run fails.", Example: "2m"},
		},
		New: func(c *core.Component, env core.Env) (core.Source, error) {
			return New(c.Name, c.String("path"), Options{
				Method:      sqlitecopy.Method(c.String("method")),
				Integrity:   sqlitecopy.Level(c.String("integrity")),
				BusyTimeout: c.Duration("busy_timeout"),
				ScratchDir:  env.ScratchDir,
				Logger:      env.Logger,
			})
		},
	})
}

// Method is how the copy is made: "backup" (page for page) or "vacuum" (VACUUM INTO).
type Method = sqlitecopy.Method

// Level is the integrity check of the copy: "full", "quick" or "off".
type Level = sqlitecopy.Level

// Options configures a Source.
type Options struct {
	Method      Method        // default backup
	Integrity   Level         // default full
	BusyTimeout time.Duration // default sqlitecopy.DefaultBusyTimeout
	ScratchDir  string        // where the copy is made; default the system temp folder
	Logger      *slog.Logger
}

// Source copies one database.
type Source struct {
	name string
	path string
	opt  Options
	log  *slog.Logger
}

// New returns a sqlite source. The database need not exist yet (restore runs on fresh
// machines); a missing database is an error when a run copies it.
func New(name, path string, opt Options) (*Source, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("the name of a sqlite source is its restored file name and cannot contain a path separator")
	}
	if path == "" {
		return nil, fmt.Errorf("path is empty")
	}
	if opt.Method == "" {
		opt.Method = sqlitecopy.MethodBackup
	}
	if opt.Integrity == "" {
		opt.Integrity = sqlitecopy.LevelFull
	}
	switch opt.Method {
	case sqlitecopy.MethodBackup, sqlitecopy.MethodVacuum:
	default:
		return nil, fmt.Errorf("method %q: expected backup or vacuum", opt.Method)
	}
	switch opt.Integrity {
	case sqlitecopy.LevelFull, sqlitecopy.LevelQuick, sqlitecopy.LevelOff:
	default:
		return nil, fmt.Errorf("integrity %q: expected full, quick or off", opt.Integrity)
	}
	if opt.BusyTimeout <= 0 {
		opt.BusyTimeout = sqlitecopy.DefaultBusyTimeout
	}
	if opt.ScratchDir == "" {
		opt.ScratchDir = os.TempDir()
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{name: name, path: path, opt: opt, log: log}, nil
}

func (s *Source) Describe() core.ArtifactSpec {
	return core.ArtifactSpec{Name: s.name, Kind: "sqlite", Filename: s.name}
}

// EstimateSize is the database's page size times its page count, -1 when it cannot be read.
func (s *Source) EstimateSize(ctx context.Context) int64 {
	info, err := sqlitecopy.Inspect(ctx, s.path, min(s.opt.BusyTimeout, 5*time.Second))
	if err != nil {
		return -1
	}
	return info.Size()
}

// Snapshot copies the database into scratch, streams the copy to w while SQLite checks it,
// and removes it, whether the run succeeds or not. A copy that fails its check fails the
// artifact once the check ends (the engine then aborts every sink's Put, so no snapshot
// names it), as it did when the check ran before the stream: what changes is only that the
// check (2.8 s for 790 MiB, one core) and the stream's zstd and age no longer wait for
// each other.
func (s *Source) Snapshot(ctx context.Context, w io.Writer) (map[string]string, error) {
	snap, err := sqlitecopy.Take(ctx, s.path, s.opt.ScratchDir,
		sqlitecopy.Options{Method: s.opt.Method, BusyTimeout: s.opt.BusyTimeout}, sqlitecopy.LevelOff)
	if err != nil {
		return nil, err // the engine names the source
	}
	defer func() {
		if err := snap.Remove(); err != nil {
			s.log.Warn("could not remove the scratch copy", "path", snap.Path, "err", err)
		}
	}()
	if why := snap.Info.WhyBackupAPI; why != "" {
		s.log.Info("copied with SQLite's backup API instead of the page copy", "path", s.path, "reason", why)
	}
	f, err := os.Open(snap.Path)
	if err != nil {
		return nil, fmt.Errorf("open the copy: %w", err)
	}
	defer f.Close()

	checkCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		res sqlitecopy.CheckResult
		err error
	}
	checked := make(chan outcome, 1)
	go func() {
		res, err := sqlitecopy.Check(checkCtx, snap.Path, s.opt.Integrity)
		if err != nil {
			cancel() // damage: stop the stream too
		}
		checked <- outcome{res, err}
	}()
	_, streamErr := io.Copy(w, ctxio.Reader(checkCtx, f))
	if streamErr != nil {
		cancel() // the sinks failed or the run was cancelled: the check is moot
	}
	c := <-checked
	switch {
	case c.err != nil && (streamErr == nil || errors.Is(c.err, sqlitecopy.ErrDamaged)):
		return nil, fmt.Errorf("copy of %s: %w", s.path, c.err)
	case streamErr != nil:
		return nil, fmt.Errorf("stream the copy: %w", streamErr)
	}
	snap.Check = c.res
	s.log.Info("database copied and checked", "path", s.path, "method", s.opt.Method, "copy_mode", snap.Info.CopyMode,
		"bytes", snap.Info.Size(), "copy", snap.Duration.Round(time.Millisecond),
		"integrity", snap.Check.Result, "check", snap.Check.Duration.Round(time.Millisecond))
	meta := snap.Meta()
	meta["path"] = s.path
	meta["method"] = string(s.opt.Method)
	return meta, nil
}
