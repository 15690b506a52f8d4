package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/sdk/blob"
	"github.com/nightjar-backup/nightjar/sdk/blob/blobtest"
)

// Every store runs the SDK's conformance suite. sdk/blob's tests also run it against this
// plugin as a real process, through gRPC.
func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s := &Store{}
		if err := s.Configure(context.Background(), blob.NewConfig("test", map[string]any{"root": t.TempDir()})); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestConfigureRejectsRelativeRoot(t *testing.T) {
	s := &Store{}
	if err := s.Configure(context.Background(), blob.NewConfig("test", map[string]any{"root": "rel/dir"})); err == nil {
		t.Fatal("Configure with a relative root: nil error")
	}
}

func TestConfigureSweepsStaleTempFiles(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "p", "20261122T020013Z-7f3a9c")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stale, fresh := filepath.Join(dir, tmpPrefix+"old"), filepath.Join(dir, tmpPrefix+"new")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	s := &Store{}
	if err := s.Configure(context.Background(), blob.NewConfig("test", map[string]any{"root": root})); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp file still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh temp file (a Put in progress elsewhere) was removed: %v", err)
	}
}
