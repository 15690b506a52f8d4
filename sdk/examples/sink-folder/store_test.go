package main

import (
	"context"
	"testing"

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
