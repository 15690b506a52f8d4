package blob_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/nightjar-backup/nightjar/sdk/blob"
)

// What goes through WriteBehind, across and between its windows, is the file's content.
func TestWriteBehind(t *testing.T) {
	want := make([]byte, 2*blob.WriteBehindWindow+777)
	for i := range want {
		want[i] = byte(i ^ i>>9)
	}
	p := filepath.Join(t.TempDir(), "obj")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(blob.WriteBehind(f), iotest.HalfReader(bytes.NewReader(want)))
	if err != nil || n != int64(len(want)) {
		t.Fatalf("copy: %d %v", n, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %d of %d bytes, equal %v, %v", len(got), len(want), bytes.Equal(got, want), err)
	}
}
