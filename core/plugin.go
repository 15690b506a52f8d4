package core

import (
	"context"
	"io"
	"log/slog"
)

// ArtifactSpec describes what a source produces.
type ArtifactSpec struct {
	Name     string // the source's configured name, e.g. "josh.db" or "data"
	Kind     string // the source's type, e.g. "sqlite" or "tree"
	Filename string // the raw artifact's file name, e.g. "josh.db" or "data.tar"
}

// Source produces one artifact per run.
type Source interface {
	Describe() ArtifactSpec
	// Snapshot writes the artifact's raw bytes to w and returns metadata for the manifest
	// (no secrets). It must not close w. An error fails the whole run; it says what went
	// wrong, not which source: the engine names the source (and the CLI names the artifact
	// for Restore and Check), so every error is named once.
	Snapshot(ctx context.Context, w io.Writer) (meta map[string]string, err error)
}

// Sizer is implemented by sources that can estimate their raw size before a run (for
// progress and ETA). It returns -1 when it cannot tell.
type Sizer interface {
	EstimateSize(ctx context.Context) int64
}

// RestoreOptions controls Restorer.Restore.
type RestoreOptions struct {
	Force bool // replace existing files
}

// Restorer is implemented by sources that can restore their own artifact. Restore reads
// the raw artifact from r and writes it below dir (dir/<source name>...).
type Restorer interface {
	Restore(ctx context.Context, r io.Reader, dir string, opt RestoreOptions) error
}

// Checker is implemented by sources that can check that a raw artifact is well-formed
// (a tar that parses, a database that passes an integrity check). Used by verify.
type Checker interface {
	Check(ctx context.Context, r io.Reader) error
}

// Transform encodes a stored artifact (compression, encryption).
type Transform interface {
	// Encode returns a writer that encodes into w. Close flushes and never closes w; the
	// engine calls it after a failed run too, and after it returns nothing more is written
	// to w (an encoder may write from its own goroutines until then).
	Encode(w io.Writer) (io.WriteCloser, error)
	// Decode returns a reader of the decoded bytes of r.
	Decode(r io.Reader) (io.ReadCloser, error)
	// Ext is the file extension it adds to the object name, e.g. ".zst".
	Ext() string
	// Descriptor is recorded in the manifest; it has "type" and never a secret.
	Descriptor() map[string]string
}

// Stored is what a sink reports for one stored object.
type Stored struct {
	Size int64  // bytes stored
	Ref  string // optional sink-specific reference, recorded in the manifest
}

// Sink stores snapshots. Contract:
//   - Put stores one object of snapshot id, reading r to io.EOF; the object is invisible to
//     List until Commit. An error from r or ctx leaves nothing that a later Commit could use.
//   - Commit makes the snapshot visible by storing its manifest last.
//   - List returns complete snapshots only, newest first.
//   - Open streams an object of a complete snapshot.
//   - Delete removes a snapshot: its manifest first (so it stops being complete), then its
//     objects.
type Sink interface {
	Put(ctx context.Context, id SnapshotID, object string, r io.Reader) (Stored, error)
	Commit(ctx context.Context, m *Manifest) error
	List(ctx context.Context) ([]*Manifest, error)
	Open(ctx context.Context, id SnapshotID, object string) (io.ReadCloser, error)
	Delete(ctx context.Context, id SnapshotID) error
}

// RawSink is implemented by sinks that want the raw artifact bytes, before the pipeline's
// transforms (restic compresses, encrypts and deduplicates by itself).
type RawSink interface {
	WantsRaw() bool
}

// Leftover is an incomplete snapshot: objects without a manifest.
type Leftover struct {
	ID      SnapshotID
	Objects int
}

// LeftoverSink is implemented by sinks that can find and remove incomplete snapshots.
type LeftoverSink interface {
	Leftovers(ctx context.Context) ([]Leftover, error)
	DeleteLeftover(ctx context.Context, id SnapshotID) error
}

// Env is what plugins get from the engine when they are built.
type Env struct {
	Pipeline   string
	Host       string
	StateDir   string
	ScratchDir string
	Logger     *slog.Logger
	// Identities are files with decryption keys, given on the command line for restore and
	// verify; encoding never needs them.
	Identities []string
}
