package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/testenv"
)

// The stock-tools steps of docs/RESTORE.md, run as written on a real snapshot: sha256sum
// against the manifest, age -d | zstd -d | tar -x, sqlite3 PRAGMA integrity_check.
func TestRestoreRunbookWithStockTools(t *testing.T) {
	for _, tool := range []string{"age", "zstd", "tar", "sqlite3", "sha256sum"} {
		testenv.Tool(t, tool)
	}
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "RESTORE.md"))
	if err != nil {
		t.Fatal(err)
	}
	const decryptTar = "age -d -i key.txt data.tar.zst.age | zstd -d | tar -x -C restored/"
	const integrity = "sqlite3 josh.db 'PRAGMA integrity_check'"
	for _, cmd := range []string{decryptTar, integrity, "sha256sum josh.db.zst.age data.tar.zst.age"} {
		if !strings.Contains(string(doc), cmd) {
			t.Fatalf("docs/RESTORE.md no longer shows %q: update this test with it", cmd)
		}
	}

	f := newOpsFixture(t)
	// A database among the files, made by the stock sqlite3.
	db := filepath.Join(f.data, "app.db")
	mk := testenv.Command(t, "sqlite3", db, "CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	key := filepath.Join(f.dir, "key.txt")
	code, recipient, stderr := runCLI(t, "keygen", "-o", key)
	if code != 0 {
		t.Fatal(stderr)
	}
	appendConfig(t, f, "  - {type: age, recipients: ["+strings.TrimSpace(recipient)+"]}\nsinks:\n"+f.localSink("cold"))
	code, stdout, stderr := runCLI(t, "run", "-c", f.config, "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	rep := decodeReport(t, stdout)

	snap := filepath.Join(f.dir, "cold", "testpipe", string(rep.ID))
	raw, err := os.ReadFile(filepath.Join(snap, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m core.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	art, ok := m.Artifact("data")
	if !ok || art.Object != "data.tar.zst.age" {
		t.Fatalf("manifest: %+v", m.Artifacts)
	}
	if err := os.WriteFile(filepath.Join(snap, "key.txt"), mustRead(t, key), 0o600); err != nil {
		t.Fatal(err)
	}
	sh := func(script string) string {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.Dir = snap
		cmd.Env = testenv.Env(t)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, errb.String())
		}
		return out.String()
	}
	if sum := strings.Fields(sh("sha256sum data.tar.zst.age"))[0]; sum != art.StoredSHA256 {
		t.Fatalf("stored sha256 %s, manifest says %s", sum, art.StoredSHA256)
	}
	sh("mkdir restored && " + decryptTar)
	for name, want := range map[string]string{"a.txt": "alpha\n", "sub/b.txt": strings.Repeat("bravo ", 1000)} {
		got, err := os.ReadFile(filepath.Join(snap, "restored", name))
		if err != nil || string(got) != want {
			t.Fatalf("restored %s: %v", name, err)
		}
	}
	// The database restored from the tar passes SQLite's own check, as the runbook says.
	if err := os.Rename(filepath.Join(snap, "restored", "app.db"), filepath.Join(snap, "josh.db")); err != nil {
		t.Fatal(err)
	}
	if out := strings.TrimSpace(sh(integrity)); out != "ok" {
		t.Fatalf("integrity_check: %q", out)
	}
	if out := strings.TrimSpace(sh("sqlite3 josh.db 'SELECT count(*) FROM t'")); out != "3" {
		t.Fatalf("rows: %q", out)
	}
	// And the raw tar's sha256 is the manifest's.
	rawTar := sh("age -d -i key.txt data.tar.zst.age | zstd -d")
	if s := sha256.Sum256([]byte(rawTar)); hex.EncodeToString(s[:]) != art.SHA256 {
		t.Fatal("decoded tar does not match the manifest's raw sha256")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
