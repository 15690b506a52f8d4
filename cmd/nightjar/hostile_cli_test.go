package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/snapstore"
	"github.com/nightjar-backup/nightjar/plugins/sink/local"
	"github.com/nightjar-backup/nightjar/plugins/source/tree"
	"github.com/nightjar-backup/nightjar/plugins/transform/age"
	"github.com/nightjar-backup/nightjar/plugins/transform/zstd"
)

type tarEntry struct {
	name, link, body string
	typ              byte
}

func makeTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// plantSnapshot stores raw (an untransformed tar) as a complete snapshot of the fixture's
// tree source, with a correct manifest: what a hostile or corrupted store could hold.
func plantSnapshot(t *testing.T, f *fixture, raw []byte) core.SnapshotID {
	t.Helper()
	id := core.NewSnapshotID(time.Now())
	sum := sha256.Sum256(raw)
	hexSum := hex.EncodeToString(sum[:])
	m := &core.Manifest{Format: core.ManifestFormat, ID: id, Pipeline: "test", Host: "h", Started: time.Now(), Finished: time.Now(),
		Artifacts: []core.Artifact{{Name: "data", Source: "tree", Object: "data.tar", Size: int64(len(raw)), SHA256: hexSum,
			StoredSize: int64(len(raw)), StoredSHA256: hexSum, Transforms: []map[string]string{}}}}
	dir := filepath.Join(f.backups, "test", string(id))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := m.Encode()
	if err := os.WriteFile(filepath.Join(dir, "data.tar"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, core.ManifestName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRestoreRefusesHostileTar(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
		want    string
	}{
		{"dot-dot entry", []tarEntry{{name: "ok.txt", body: "fine", typ: tar.TypeReg}, {name: "../outside/evil.txt", body: "evil", typ: tar.TypeReg}}, "escapes the target"},
		{"dot-dot inside a path", []tarEntry{{name: "a/../../outside/evil.txt", body: "evil", typ: tar.TypeReg}}, "escapes the target"},
		{"absolute path", []tarEntry{{name: "/tmp/nightjar-evil-abs.txt", body: "evil", typ: tar.TypeReg}}, "absolute path"},
		{"file through an outward symlink (absolute)", []tarEntry{{name: "link", link: "OUTSIDE", typ: tar.TypeSymlink}, {name: "link/evil.txt", body: "evil", typ: tar.TypeReg}}, "link/evil.txt"},
		{"file through an outward symlink (relative)", []tarEntry{{name: "link", link: "../../outside", typ: tar.TypeSymlink}, {name: "link/evil.txt", body: "evil", typ: tar.TypeReg}}, "link/evil.txt"},
		{"symlink through an outward symlink", []tarEntry{{name: "link", link: "OUTSIDE", typ: tar.TypeSymlink}, {name: "link/evil-link", link: "/etc/passwd", typ: tar.TypeSymlink}}, "link/evil-link"},
		{"folder through an outward symlink", []tarEntry{{name: "link", link: "OUTSIDE", typ: tar.TypeSymlink}, {name: "link/sub/", typ: tar.TypeDir}}, "link/sub"},
		{"hard link to an absolute path", []tarEntry{{name: "hard", link: "/etc/passwd", typ: tar.TypeLink}}, "absolute path"},
		{"hard link to a dot-dot path", []tarEntry{{name: "hard", link: "../outside/x", typ: tar.TypeLink}}, "escapes the target"},
		{"hard link through an outward symlink", []tarEntry{{name: "link", link: "FIXTURE", typ: tar.TypeSymlink}, {name: "hard", link: "link/pipeline.yaml", typ: tar.TypeLink}}, "hard link to link/pipeline.yaml"},
		{"hard link made through an outward symlink", []tarEntry{{name: "ok.txt", body: "fine", typ: tar.TypeReg}, {name: "link", link: "OUTSIDE", typ: tar.TypeSymlink}, {name: "link/evil", link: "ok.txt", typ: tar.TypeLink}}, "link/evil"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{noTransforms: true})
			outside := filepath.Join(f.dir, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range tc.entries {
				tc.entries[i].link = strings.ReplaceAll(tc.entries[i].link, "OUTSIDE", outside)
				tc.entries[i].link = strings.ReplaceAll(tc.entries[i].link, "FIXTURE", f.dir) // holds the config
			}
			plantSnapshot(t, f, makeTar(t, tc.entries))
			to := filepath.Join(f.dir, "restore")
			r := nj(t, "restore", "-c", f.config, "--to", to)
			if r.code != exitFailed || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("want exit 1 and %q, got %v", tc.want, r)
			}
			assertNoObjects(t, outside)
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Fatalf("restore wrote outside the target: %v", entries)
			}
			if _, err := os.Lstat("/tmp/nightjar-evil-abs.txt"); err == nil {
				t.Fatal("restore wrote an absolute path")
			}
			if tc.want == "escapes the target" || tc.want == "absolute path" {
				// verify parses the tar and flags names no restore would accept.
				r = nj(t, "verify", "-c", f.config)
				if r.code != exitFailed || !strings.Contains(r.stdout, "DAMAGED") {
					t.Errorf("verify: want exit 1 and DAMAGED, got %v", r)
				}
			}
		})
	}
}

// TestKilledRunIsNotListed kills a real nightjar process with SIGKILL while it stores an
// artifact: the snapshot must not be listed, and the next run succeeds beside the leftover.
func TestKilledRunIsNotListed(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	makeOddTree(t, f.data)
	// A large sparse file keeps the run busy long enough to be killed mid-stream.
	big, err := os.Create(filepath.Join(f.data, "zz-big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := big.Truncate(8 << 30); err != nil {
		t.Fatal(err)
	}
	big.Close()

	cmd := exec.Command(nightjarBin(t), "run", "-c", f.config)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + f.dir}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until a stored object is being written, then kill.
	deadline := time.Now().Add(60 * time.Second)
	for !hasTempObject(f.backups) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no object was being written after 60s:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("the run finished before it was killed (%v):\n%s", err, out.String())
	}
	if ms := f.snapshots(t); len(ms) != 0 {
		t.Fatalf("a killed run is listed: %v", ms[0].ID)
	}
	if err := os.Remove(filepath.Join(f.data, "zz-big.bin")); err != nil {
		t.Fatal(err)
	}
	rep := runOK(t, f)
	ms := f.snapshots(t)
	if len(ms) != 1 || ms[0].ID != rep.ID {
		t.Fatalf("after the killed run, want only %s, got %d snapshots", rep.ID, len(ms))
	}
}

func hasTempObject(dir string) bool {
	found := false
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".nightjar-tmp-") {
			found = true
		}
		return nil
	})
	return found
}

// TestUnreadableFileFailsRun runs nightjar as an unprivileged user over a tree with a file
// it may not read: the run fails, names the file, and commits nothing. (As root, who reads
// every file, the process drops to uid/gid 65534.)
func TestUnreadableFileFailsRun(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	makeOddTree(t, f.data)
	secret := filepath.Join(f.data, "private", "root-only.txt")
	writeFile(t, secret, "root only", 0o000, time.Now())
	for _, d := range []string{"private", "empty/nested-empty"} { // 0700 folders: make them readable
		if err := os.Chmod(filepath.Join(f.data, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The unprivileged process must reach the config, the key files and the sink folder.
	for p := f.dir; p != "/" && p != "/tmp"; p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	for _, p := range []string{f.backups, filepath.Join(f.dir, "state")} {
		if err := os.MkdirAll(p, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o777)
	}
	cmd := exec.Command(nightjarBin(t), "run", "-c", f.config)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + f.dir}
	if os.Geteuid() == 0 { // root reads every file: run as nobody; otherwise mode 000 already denies
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if err == nil || cmd.ProcessState.ExitCode() != exitFailed {
		t.Fatalf("want exit 1, got %v:\n%s", err, out)
	}
	if !strings.Contains(string(out), secret) || !strings.Contains(string(out), "permission denied") {
		t.Fatalf("the error does not name the unreadable file:\n%s", out)
	}
	if ms := f.snapshots(t); len(ms) != 0 {
		t.Fatalf("a failed run is listed")
	}
	assertNoObjects(t, f.backups)
}

// mutatingSink is a local sink that changes a source file when it receives its first
// bytes: the tree source is then still reading that file (the queue between them is
// bounded), so the run must report it as changed while read.
type mutatingSink struct {
	core.Sink
	once sync.Once
	path string
}

func (m *mutatingSink) Put(ctx context.Context, id core.SnapshotID, object string, r io.Reader) (core.Stored, error) {
	first := make([]byte, 1)
	n, err := io.ReadFull(r, first)
	if err != nil {
		return core.Stored{}, err
	}
	m.once.Do(func() {
		fh, err := os.OpenFile(m.path, os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			fh.Write([]byte("appended while nightjar reads"))
			fh.Close()
		}
	})
	st, err := m.Sink.Put(ctx, id, object, io.MultiReader(bytes.NewReader(first[:n]), r))
	return st, err
}

func TestChangedWhileReadIsReported(t *testing.T) {
	f := newFixture(t, fixtureOpts{noTransforms: true})
	big := filepath.Join(f.data, "growing.log")
	writeFile(t, big, strings.Repeat("log line\n", 64<<20/9), 0o644, time.Now().Add(-time.Hour))
	reg := core.NewRegistry()
	tree.Register(reg)
	zstd.Register(reg)
	age.Register(reg)
	reg.AddSink(core.SinkPlugin{Type: "local", Fields: []core.Field{{Name: "path", Kind: core.KindPath, Required: true}},
		New: func(ctx context.Context, c *core.Component, env core.Env) (core.Sink, error) {
			st, err := local.NewStore(c.String("path"))
			if err != nil {
				return nil, err
			}
			return &mutatingSink{Sink: snapstore.New(st, env.Pipeline), path: big}, nil
		}})
	r := njWith(t, reg, "run", "-c", f.config)
	if r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	if !strings.Contains(r.stdout, "1 file(s) changed while read") || !strings.Contains(r.stdout, "growing.log") {
		t.Fatalf("the run's output does not report the changed file:\n%v", r)
	}
	ms := f.snapshots(t)
	if len(ms) != 1 || ms[0].Artifacts[0].Meta["changed_while_read"] != "1" || ms[0].Artifacts[0].Meta["changed_files"] != "growing.log" {
		t.Fatalf("manifest meta: %+v", ms)
	}
}
