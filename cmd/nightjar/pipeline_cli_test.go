package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runOK runs the pipeline and returns its report.
func runOK(t *testing.T, f *fixture) runReport {
	t.Helper()
	r := nj(t, "run", "-c", f.config, "--json")
	if r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	var rep runReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("run --json: %v\n%s", err, r.stdout)
	}
	return rep
}

// TestOddTreeRoundTrip backs up a tree with odd names, symlinks, empty folders and modes,
// and restores it through nightjar and through the stock age | zstd | tar pipeline; mtimes
// come back in whole seconds by default and to the nanosecond with subsecond_mtimes.
func TestOddTreeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name, treeOpts string
		mtime          func(time.Time) time.Time
	}{
		{"whole seconds", "", func(m time.Time) time.Time { return m.Truncate(time.Second) }},
		{"subsecond_mtimes", "subsecond_mtimes: true", func(m time.Time) time.Time { return m }},
	} {
		t.Run(tc.name, func(t *testing.T) { oddTreeRoundTrip(t, tc.treeOpts, tc.mtime) })
	}
}

func oddTreeRoundTrip(t *testing.T, treeOpts string, mtime func(time.Time) time.Time) {
	f := newFixture(t, fixtureOpts{treeOpts: treeOpts})
	makeOddTree(t, f.data)
	want := snapshotTree(t, f.data)
	for name, e := range want {
		e.mtime = mtime(e.mtime)
		want[name] = e
	}
	rep := runOK(t, f)
	if rep.Status != "ok" || len(rep.Sinks) != 1 || rep.Sinks[0].Status != "committed" {
		t.Fatalf("run report: %+v", rep)
	}
	ms := f.snapshots(t)
	if len(ms) != 1 || ms[0].ID != rep.ID {
		t.Fatalf("snapshots: want [%s], got %d", rep.ID, len(ms))
	}
	m := ms[0]
	art := m.Artifacts[0]
	if art.Object != "data.tar.zst.age" || art.Meta["files"] != "8" || art.Meta["symlinks"] != "5" {
		t.Errorf("artifact: %+v", art)
	}

	t.Run("nightjar restore", func(t *testing.T) {
		to := filepath.Join(f.dir, "restore-nj")
		r := nj(t, "restore", "-c", f.config, "--identity", f.key, "--to", to)
		if r.code != 0 {
			t.Fatalf("restore: %v", r)
		}
		compareTrees(t, want, snapshotTree(t, filepath.Join(to, "data")), "nightjar restore")
	})

	t.Run("stock age, zstd and tar", func(t *testing.T) {
		obj := f.objectPath(m, art.Object)
		to := filepath.Join(f.dir, "restore-stock")
		if err := os.Mkdir(to, 0o755); err != nil {
			t.Fatal(err)
		}
		shell(t, f.dir, `age -d -i "`+f.key+`" "`+obj+`" | zstd -d -q | tar -x -C "`+to+`"`)
		compareTrees(t, want, snapshotTree(t, to), "stock restore")

		// The manifest's hashes are those of the stored object and the decoded stream.
		stored := strings.Fields(shell(t, f.dir, `sha256sum < "`+obj+`"`))[0]
		raw := strings.Fields(shell(t, f.dir, `age -d -i "`+f.key+`" "`+obj+`" | zstd -d -q | sha256sum`))[0]
		size := strings.TrimSpace(shell(t, f.dir, `age -d -i "`+f.key+`" "`+obj+`" | zstd -d -q | wc -c`))
		if stored != art.StoredSHA256 || raw != art.SHA256 {
			t.Errorf("manifest sha256 stored %s raw %s; sha256sum gives stored %s raw %s", art.StoredSHA256, art.SHA256, stored, raw)
		}
		if info, err := os.Stat(obj); err != nil || info.Size() != art.StoredSize {
			t.Errorf("stored size: manifest %d, file %v %v", art.StoredSize, info, err)
		}
		if size != itoa(art.Size) {
			t.Errorf("raw size: manifest %d, decoded %s", art.Size, size)
		}
	})

	t.Run("restore refuses a non-empty target without --force", func(t *testing.T) {
		to := filepath.Join(f.dir, "restore-nj")
		marker := filepath.Join(to, "data", "plain.txt")
		if err := os.WriteFile(marker, []byte("local change"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := nj(t, "restore", "-c", f.config, "--identity", f.key, "--to", to)
		if r.code != exitFailed || !strings.Contains(r.stderr, "pass --force") {
			t.Fatalf("restore over a non-empty target: %v", r)
		}
		if b, _ := os.ReadFile(marker); string(b) != "local change" {
			t.Fatalf("restore without --force changed %s", marker)
		}
		r = nj(t, "restore", "-c", f.config, "--identity", f.key, "--to", to, "--force")
		if r.code != 0 {
			t.Fatalf("restore --force: %v", r)
		}
		compareTrees(t, want, snapshotTree(t, filepath.Join(to, "data")), "restore --force")
	})

	t.Run("restore of an encrypted artifact without --identity", func(t *testing.T) {
		r := nj(t, "restore", "-c", f.config, "--to", filepath.Join(f.dir, "restore-noid"))
		if r.code != exitFailed || !strings.Contains(r.stderr, "--identity") {
			t.Fatalf("want exit 1 asking for --identity: %v", r)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestTarIsDeterministic: two runs over an unchanged tree store the same raw bytes.
func TestTarIsDeterministic(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	makeOddTree(t, f.data)
	a, b := runOK(t, f), runOK(t, f)
	if a.ID == b.ID {
		t.Fatal("two runs made one snapshot id")
	}
	if a.Artifacts[0].SHA256 != b.Artifacts[0].SHA256 || a.Artifacts[0].Size != b.Artifacts[0].Size {
		t.Fatalf("raw artifacts differ: %s (%d) vs %s (%d)", a.Artifacts[0].SHA256, a.Artifacts[0].Size, b.Artifacts[0].SHA256, b.Artifacts[0].Size)
	}
	if a.Artifacts[0].StoredSHA256 == b.Artifacts[0].StoredSHA256 {
		t.Error("age output should differ between runs (fresh file key)")
	}
	if n := len(f.snapshots(t)); n != 2 {
		t.Fatalf("want 2 snapshots, got %d", n)
	}
}

// TestVerifyDetectsDamage flips one byte or truncates the stored object.
func TestVerifyDetectsDamage(t *testing.T) {
	damage := []struct {
		name string
		do   func(t *testing.T, p string)
	}{
		{"one flipped byte", func(t *testing.T, p string) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(p, b, 0o640); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", func(t *testing.T, p string) {
			info, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, info.Size()-100); err != nil {
				t.Fatal(err)
			}
		}},
		{"one byte appended", func(t *testing.T, p string) {
			fh, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fh.Write([]byte{0})
			fh.Close()
		}},
	}
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{})
			makeOddTree(t, f.data)
			runOK(t, f)
			for _, args := range [][]string{{}, {"--identity", f.key}} {
				r := nj(t, append([]string{"verify", "-c", f.config}, args...)...)
				if r.code != 0 || !strings.Contains(r.stdout, "ok (") {
					t.Fatalf("verify %v before damage: %v", args, r)
				}
			}
			m := f.snapshots(t)[0]
			d.do(t, f.objectPath(m, m.Artifacts[0].Object))
			for _, args := range [][]string{{}, {"--identity", f.key}} {
				r := nj(t, append([]string{"verify", "-c", f.config}, args...)...)
				if r.code != exitFailed || !strings.Contains(r.stdout, "DAMAGED") {
					t.Errorf("verify %v after damage: want exit 1 and DAMAGED, got %v", args, r)
				}
			}
			r := nj(t, "restore", "-c", f.config, "--identity", f.key, "--to", filepath.Join(f.dir, "r"))
			if r.code != exitFailed || !strings.Contains(r.stderr, "damaged") {
				t.Errorf("restore of a damaged object: want exit 1 and damaged, got %v", r)
			}
		})
	}
}

// TestMissingSourceCommitsNothing: a source path that does not exist fails the run.
func TestMissingSourceCommitsNothing(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	if err := os.Remove(f.data); err != nil {
		t.Fatal(err)
	}
	r := nj(t, "run", "-c", f.config)
	if r.code != exitFailed || !strings.Contains(r.stderr, "no such file or directory") || !strings.Contains(r.stderr, `source "data"`) {
		t.Fatalf("want exit 1 naming the source: %v", r)
	}
	if ms := f.snapshots(t); len(ms) != 0 {
		t.Fatalf("a failed run left %d snapshots", len(ms))
	}
	assertNoObjects(t, f.backups)
}

// assertNoObjects fails if any file is stored below dir.
func assertNoObjects(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
}

// TestPartialRun: one sink fails, the other commits, the run exits 3.
func TestPartialRun(t *testing.T) {
	broken := filepath.Join(t.TempDir(), "broken")
	if err := os.MkdirAll(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	// The pipeline's folder is a file, so every Put in this sink fails.
	if err := os.WriteFile(filepath.Join(broken, "test"), []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{extraSinks: "  - {name: broken, type: local, path: " + broken + "}\n"})
	makeOddTree(t, f.data)
	r := nj(t, "run", "-c", f.config, "--json")
	if r.code != exitPartial {
		t.Fatalf("want exit 3, got %v", r)
	}
	var rep runReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Status != "partial" || rep.Sinks[0].Status != "committed" || rep.Sinks[1].Status != "failed" || !strings.Contains(rep.Sinks[1].Error, "not a directory") {
		t.Fatalf("report: %+v", rep)
	}
	if ms := f.snapshots(t); len(ms) != 1 || ms[0].ID != rep.ID {
		t.Fatalf("the healthy sink should hold the snapshot: %v", ms)
	}
	r = nj(t, "snapshots", "-c", f.config, "--sink", "broken")
	if r.code == 0 && !strings.Contains(r.stdout, "no complete snapshot") {
		t.Fatalf("the broken sink lists a snapshot: %v", r)
	}
	r = nj(t, "verify", "-c", f.config, "--identity", f.key)
	if r.code != 0 {
		t.Fatalf("verify the committed snapshot: %v", r)
	}
}
