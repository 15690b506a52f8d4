package all_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/nightjar-backup/nightjar/core/testenv"
	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitetest"
	"github.com/nightjar-backup/nightjar/plugins/source/tree"
)

// TestResticEndToEnd: a pipeline with a tree source and a live SQLite source (a writer in
// another process) to a restic repository, through the CLI. The pipeline also has zstd and
// age transforms, which the restic sink bypasses (it receives raw bytes). restic itself lists
// the snapshots; `restic dump` gives the tree's raw tar and an intact SQLite copy; `nightjar
// restore` matches; an unchanged second run grows the repository by only a few percent; a
// wrong password fails and is never printed.
func TestResticEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real restic, sqlite3, writer process")
	}
	resticBin := testenv.Tool(t, "restic")
	testenv.Tool(t, "sqlite3")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	rng := rand.New(rand.NewSource(7))
	for name, n := range map[string]int{"photos/a.bin": 3 << 20, "docs/readme.txt": 2000, "docs/empty": 0} {
		p := filepath.Join(data, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		b := make([]byte, n)
		rng.Read(b)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(dir, "db", "bank.db")
	os.MkdirAll(filepath.Dir(db), 0o755)
	sqlitetest.CreateBank(t, db, "wal", 4)

	repoDir := filepath.Join(dir, "repo")
	pw := filepath.Join(dir, "restic-password")
	os.WriteFile(pw, []byte("e2e-restic-password-1234\n"), 0o600)
	restic := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(resticBin, args...)
		cmd.Env = testenv.Env(t, "RESTIC_REPOSITORY="+repoDir, "RESTIC_PASSWORD_FILE="+pw)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("restic %v: %v: %s", args, err, stderr.String())
		}
		return out
	}
	restic("init")

	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	writeConfig := func(name, password string) string {
		cfg := filepath.Join(dir, name)
		os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 1
pipeline: e2e
state_dir: %s
scratch_dir: %s
sources:
  - {name: data, type: tree, path: %s}
  - {name: bank.db, type: sqlite, path: %s}
transforms:
  - {type: zstd, level: 3}
  - {type: age, recipients: [%q]}
sinks:
  - name: restic
    type: restic
    repository: %s
    %s
`, filepath.Join(dir, "state"), filepath.Join(dir, "scratch"), data, db, id.Recipient().String(), repoDir, password)), 0o644)
		return cfg
	}
	cfg := writeConfig("nightjar.yaml", "password_file: "+pw)
	bin := cli{t, buildNightjar(t)}

	w := sqlitetest.StartWriter(t, db)
	time.Sleep(300 * time.Millisecond)
	if out, errOut, code := bin.run("run", "-c", cfg); code != 0 {
		t.Fatalf("nightjar run: exit %d: %s %s", code, out, errOut)
	}
	if _, err := w.Stop(); err != nil {
		t.Fatalf("writer: %v", err)
	}

	// restic lists the nightjar snapshot: one restic snapshot per artifact plus the manifest.
	var snaps []struct {
		ShortID string   `json:"short_id"`
		Paths   []string `json:"paths"`
		Tags    []string `json:"tags"`
	}
	if err := json.Unmarshal(restic("snapshots", "--json", "--tag", "nightjar-pipeline=e2e"), &snaps); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	for _, s := range snaps {
		paths[s.Paths[0]] = s.ShortID
	}
	for _, p := range []string{"/e2e/data.tar", "/e2e/bank.db", "/e2e/manifest.json"} {
		if paths[p] == "" {
			t.Fatalf("restic snapshots lacks %s: %+v", p, snaps)
		}
	}

	// restic dump gives the raw tar (not zstd, not age), equal to the source tree.
	tarBytes := restic("dump", paths["/e2e/data.tar"], "/e2e/data.tar")
	src, err := tree.New("data", data, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if _, err := src.Snapshot(context.Background(), &want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tarBytes, want.Bytes()) {
		t.Fatalf("restic dump of data.tar (%d bytes) differs from the tree's tar (%d bytes)", len(tarBytes), want.Len())
	}
	extracted := filepath.Join(dir, "extracted")
	os.MkdirAll(extracted, 0o755)
	tarCmd := testenv.Command(t, "tar", "-x", "-C", extracted)
	tarCmd.Stdin = bytes.NewReader(tarBytes)
	if out, err := tarCmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x of restic dump: %v: %s", err, out)
	}
	sameTree(t, data, extracted)

	// restic dump gives an intact SQLite copy.
	dumped := filepath.Join(dir, "dumped.db")
	os.WriteFile(dumped, restic("dump", paths["/e2e/bank.db"], "/e2e/bank.db"), 0o644)
	if got := stockIntegrity(t, dumped); got != "ok" {
		t.Fatalf("sqlite3 integrity_check of restic dump: %s", got)
	}
	sqlitetest.CheckInvariant(t, dumped)

	// nightjar restore from the restic sink matches.
	to := filepath.Join(dir, "restore")
	if out, errOut, code := bin.run("restore", "-c", cfg, "--to", to); code != 0 {
		t.Fatalf("nightjar restore: exit %d: %s %s", code, out, errOut)
	}
	sameTree(t, data, filepath.Join(to, "data"))
	if !bytes.Equal(mustRead(t, filepath.Join(to, "bank.db")), mustRead(t, dumped)) {
		t.Fatal("nightjar restore's bank.db differs from restic dump's")
	}
	if out, errOut, code := bin.run("verify", "-c", cfg); code != 0 {
		t.Fatalf("nightjar verify: exit %d: %s %s", code, out, errOut)
	}

	// With the writer stopped the database no longer changes: of two runs now, the second
	// grows the repository by only a few percent.
	if out, errOut, code := bin.run("run", "-c", cfg); code != 0 {
		t.Fatalf("second nightjar run: exit %d: %s %s", code, out, errOut)
	}
	before := dirSize(t, repoDir)
	if out, errOut, code := bin.run("run", "-c", cfg); code != 0 {
		t.Fatalf("third nightjar run: exit %d: %s %s", code, out, errOut)
	}
	growth := dirSize(t, repoDir) - before
	t.Logf("repository: %d bytes, an unchanged run added %d (%.2f%%)", before, growth, 100*float64(growth)/float64(before))
	if growth > before/20 {
		t.Errorf("an unchanged run grew the repository by %d bytes, more than 5%% of %d", growth, before)
	}
	out, errOut, code := bin.run("snapshots", "-c", cfg, "--json")
	if code != 0 || strings.Count(out, `"format": "nightjar.manifest/v1"`) != 3 {
		t.Fatalf("nightjar snapshots: exit %d: %s %s", code, out, errOut)
	}

	// A wrong password fails, says so, and is never printed.
	const wrong = "wrong-e2e-password-do-not-print"
	bad := writeConfig("bad.yaml", "password: "+wrong)
	for _, args := range [][]string{{"run", "-c", bad}, {"snapshots", "-c", bad}} {
		out, errOut, code := bin.run(args...)
		if code == 0 || !strings.Contains(out+errOut, "wrong password") {
			t.Errorf("nightjar %s with a wrong password: exit %d: %s %s", args[0], code, out, errOut)
		}
		if strings.Contains(out+errOut, wrong) {
			t.Errorf("nightjar %s printed the password: %s %s", args[0], out, errOut)
		}
	}
	if out, _, _ := bin.run("config", "show", "-c", bad); strings.Contains(out, wrong) {
		t.Errorf("config show printed the password: %s", out)
	}
}

func sameTree(t *testing.T, want, got string) {
	t.Helper()
	n := 0
	filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		b, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil || !bytes.Equal(b, mustRead(t, p)) {
			t.Errorf("%s differs in %s (%v)", rel, got, err)
		}
		n++
		return nil
	})
	if n == 0 {
		t.Fatalf("no files compared under %s", want)
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return err
	})
	return n
}
