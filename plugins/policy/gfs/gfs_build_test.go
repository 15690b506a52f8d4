package gfs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"github.com/nightjar-backup/nightjar/plugins/policy/gfs"
	"github.com/nightjar-backup/nightjar/sdk/policy/policytest"
)

// TestModuleIsReproducible rebuilds gfs.wasm from source with the fixed flags and compares
// it with the committed, embedded bytes. If it fails after a change to gfs or sdk/policy
// (or a Go upgrade), run `make policy` and commit gfs.wasm.
func TestModuleIsReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a WebAssembly module")
	}
	out := filepath.Join(t.TempDir(), "gfs.wasm")
	if err := policytest.Build(context.Background(), ".", "./wasm", out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, gfs.Module) {
		t.Fatalf("gfs.wasm is stale: rebuilt %d bytes sha256 %x, embedded %d bytes sha256 %x; run `make policy` and commit plugins/policy/gfs/gfs.wasm",
			len(got), sha256.Sum256(got), len(gfs.Module), sha256.Sum256(gfs.Module))
	}
}
