package all_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/engine"
	"github.com/nightjar-backup/nightjar/core/snapstore"
	"github.com/nightjar-backup/nightjar/core/testenv"
	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitetest"
	"github.com/nightjar-backup/nightjar/plugins/sink/local"
	"github.com/nightjar-backup/nightjar/plugins/source/sqlite"
	agetr "github.com/nightjar-backup/nightjar/plugins/transform/age"
	"github.com/nightjar-backup/nightjar/plugins/transform/zstd"
)

func TestMain(m *testing.M) {
	sqlitetest.RunWriterIfRequested()
	os.Exit(m.Run())
}

// decodeStock decodes a stored .zst.age object with the stock age and zstd binaries.
func decodeStock(t *testing.T, key, obj, out string) {
	t.Helper()
	zst := out + ".zst"
	if b, err := testenv.Command(t, "age", "-d", "-i", key, "-o", zst, obj).CombinedOutput(); err != nil {
		t.Fatalf("age -d: %v: %s", err, b)
	}
	if b, err := testenv.Command(t, "zstd", "-d", "-q", "-f", zst, "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("zstd -d: %v: %s", err, b)
	}
	os.Remove(zst)
}

func stockIntegrity(t *testing.T, path string) string {
	t.Helper()
	out, err := testenv.Command(t, "sqlite3", path, "PRAGMA integrity_check").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v: %s", path, err, out)
	}
	return strings.TrimSpace(string(out))
}

// buildNightjar builds the CLI once per test.
func buildNightjar(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nightjar")
	// An explicit environment, with the go command's caches so the build is incremental.
	var extra []string
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOROOT", "GOPROXY", "GOTOOLCHAIN", "GOFLAGS", "CGO_ENABLED"} {
		out, err := exec.Command("go", "env", k).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", k, err)
		}
		extra = append(extra, k+"="+strings.TrimSpace(string(out)))
	}
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/nightjar")
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = testenv.Env(t, extra...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

type cli struct {
	t   *testing.T
	bin string
}

func (c cli) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = testenv.Env(c.t)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("nightjar %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// TestSQLiteEndToEnd backs up a live WAL database (a writer in another process commits
// throughout) through the engine and through `nightjar run`, with zstd and age into a local
// sink; decodes the stored artifacts with the stock age and zstd; checks them with sqlite3
// and the cross-table invariant; restores with `nightjar restore` and compares bytes.
func TestSQLiteEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: writer process, stock age, zstd and sqlite3")
	}
	for _, tool := range []string{"age", "zstd", "sqlite3"} {
		testenv.Tool(t, tool)
	}
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "data", "bank.db")
	os.MkdirAll(filepath.Dir(db), 0o755)
	sqlitetest.CreateBank(t, db, "wal", 16)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key.txt")
	os.WriteFile(key, []byte(id.String()+"\n"), 0o600)
	backups := filepath.Join(dir, "backups")
	scratch := filepath.Join(dir, "scratch")

	w := sqlitetest.StartWriter(t, db)
	time.Sleep(300 * time.Millisecond)

	// 1. Through core/engine.Run.
	src, err := sqlite.New("bank.db", db, sqlite.Options{ScratchDir: scratch})
	if err != nil {
		t.Fatal(err)
	}
	store, err := local.NewStore(backups)
	if err != nil {
		t.Fatal(err)
	}
	res, err := engine.Run(ctx, &engine.Pipeline{
		Name:       "e2e",
		Host:       "test",
		Sources:    []core.Source{src},
		Transforms: []core.Transform{zstd.New(3, 0), agetr.New(id.Recipient())},
		Sinks:      []engine.NamedSink{{Name: "local", Sink: snapstore.New(store, "e2e")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	art := res.Artifacts[0]
	if art.Object != "bank.db.zst.age" || art.Meta["integrity"] != "ok" || art.Meta["journal_mode"] != "wal" {
		t.Errorf("artifact %+v", art)
	}
	first := filepath.Join(dir, "first.db")
	decodeStock(t, key, filepath.Join(backups, "e2e", string(res.ID), art.Object), first)
	if got := stockIntegrity(t, first); got != "ok" {
		t.Fatalf("sqlite3 integrity_check of the engine's artifact: %s", got)
	}
	n1 := sqlitetest.CheckInvariant(t, first)

	// 2. Through the CLI, with the writer still committing.
	bin := cli{t, buildNightjar(t)}
	cfg := filepath.Join(dir, "nightjar.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 1
pipeline: e2e
state_dir: %s
scratch_dir: %s
sources:
  - {name: bank.db, type: sqlite, path: %s}
transforms:
  - {type: zstd, level: 3}
  - {type: age, recipients: [%q]}
sinks:
  - {name: local, type: local, path: %s}
`, filepath.Join(dir, "state"), scratch, db, id.Recipient().String(), backups)), 0o644)
	out, errOut, code := bin.run("run", "-c", cfg, "--json", "-q")
	if code != 0 {
		t.Fatalf("nightjar run: exit %d: %s %s", code, out, errOut)
	}
	commits, err := w.Stop()
	if err != nil {
		t.Fatalf("the writer saw an error during the backups: %v", err)
	}
	ms, err := snapstore.New(store, "e2e").List(ctx)
	if err != nil || len(ms) != 2 {
		t.Fatalf("snapshots: %d, %v", len(ms), err)
	}
	latest := ms[0]
	second := filepath.Join(dir, "second.db")
	decodeStock(t, key, filepath.Join(backups, "e2e", string(latest.ID), "bank.db.zst.age"), second)
	if got := stockIntegrity(t, second); got != "ok" {
		t.Fatalf("sqlite3 integrity_check of the CLI's artifact: %s", got)
	}
	n2 := sqlitetest.CheckInvariant(t, second)
	t.Logf("writer committed %d transactions; copies hold %d and %d", commits, n1, n2)
	if n1 == 0 || n2 <= n1 || commits <= n2 {
		t.Errorf("copies hold %d then %d transfers of %d committed: the runs did not happen under load", n1, n2, commits)
	}

	// 3. verify decodes and integrity-checks; restore gives the same bytes and then refuses
	// to overwrite them.
	if out, errOut, code := bin.run("verify", "-c", cfg, "--identity", key); code != 0 || !strings.Contains(out, "sqlite contents") {
		t.Fatalf("nightjar verify: exit %d: %s %s", code, out, errOut)
	}
	to := filepath.Join(dir, "restore")
	if out, errOut, code := bin.run("restore", "-c", cfg, "--identity", key, "--to", to); code != 0 {
		t.Fatalf("nightjar restore: exit %d: %s %s", code, out, errOut)
	}
	want, _ := os.ReadFile(second)
	got, err := os.ReadFile(filepath.Join(to, "bank.db"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restored database differs from the stock-decoded artifact (%v)", err)
	}
	_, errOut, code = bin.run("restore", "-c", cfg, "--identity", key, "--to", to)
	if code != 1 || !strings.Contains(errOut, "--force") {
		t.Fatalf("restore over an existing database: exit %d: %s", code, errOut)
	}
	if got2, _ := os.ReadFile(filepath.Join(to, "bank.db")); !bytes.Equal(got2, want) {
		t.Fatal("a refused restore changed the existing database")
	}
	if _, errOut, code := bin.run("restore", "-c", cfg, "--identity", key, "--to", to, "--snapshot", string(res.ID), "--force"); code != 0 {
		t.Fatalf("forced restore: exit %d: %s", code, errOut)
	}
	if got3, _ := os.ReadFile(filepath.Join(to, "bank.db")); !bytes.Equal(got3, mustRead(t, first)) {
		t.Fatal("forced restore of the first snapshot did not give its bytes")
	}
	if left, _ := os.ReadDir(scratch); len(left) != 0 {
		t.Errorf("scratch not cleaned: %v", left)
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
