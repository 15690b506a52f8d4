package local

import (
	"bytes"
	"context"
	"testing"

	"github.com/nightjar-backup/nightjar/sdk/blob"
	"github.com/nightjar-backup/nightjar/sdk/blob/blobtest"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := NewStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// BenchmarkPut is the baseline for sdk/blob's BenchmarkPutThroughPlugin (same object size).
func BenchmarkPut(b *testing.B) {
	s, err := NewStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 32<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := s.Put(context.Background(), "bench/obj", bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
