package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/sys/unix"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/testenv"
	"github.com/nightjar-backup/nightjar/plugins/all"
)

// nightjarBin is the real nightjar binary (built once, see plugins_test.go), for the
// tests that need a process of their own.
func nightjarBin(t *testing.T) string {
	t.Helper()
	dir := bins(t)
	_ = os.Chmod(dir, 0o755) // reachable by the unprivileged user of TestUnreadableFileFailsRun
	return filepath.Join(dir, "nightjar")
}

// result is one CLI invocation.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// nj runs the CLI in-process with every built-in plugin.
func nj(t testing.TB, args ...string) result {
	t.Helper()
	return njWith(t, all.Registry(), args...)
}

func njWith(t testing.TB, reg *core.Registry, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := executeWith(context.Background(), reg, args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

// fixture is a pipeline under one temp folder: data/, backups/, a key pair and a config.
type fixture struct {
	dir, data, backups, config, key, recipient string
}

type fixtureOpts struct {
	noTransforms bool
	extraSinks   string // YAML list items appended to sinks
	treeOpts     string // flow-map items added to the tree source, e.g. "subsecond_mtimes: true"
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, data: filepath.Join(dir, "data"), backups: filepath.Join(dir, "backups"),
		config: filepath.Join(dir, "pipeline.yaml"), key: filepath.Join(dir, "key.txt")}
	if err := os.MkdirAll(f.data, 0o755); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	f.recipient = id.Recipient().String()
	if err := os.WriteFile(f.key, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	transforms := fmt.Sprintf("transforms:\n  - {type: zstd, level: 3}\n  - {type: age, recipients: [%q]}\n", f.recipient)
	if o.noTransforms {
		transforms = ""
	}
	treeOpts := ""
	if o.treeOpts != "" {
		treeOpts = ", " + o.treeOpts
	}
	cfg := fmt.Sprintf(`version: 1
pipeline: test
state_dir: %s
sources:
  - {name: data, type: tree, path: %s%s}
%ssinks:
  - {name: local, type: local, path: %s}
%s`, filepath.Join(dir, "state"), f.data, treeOpts, transforms, f.backups, o.extraSinks)
	if err := os.WriteFile(f.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// snapshots lists the complete snapshots of the fixture's first sink through the CLI.
func (f *fixture) snapshots(t *testing.T) []*core.Manifest {
	t.Helper()
	r := nj(t, "snapshots", "-c", f.config, "--json")
	if r.code != 0 {
		t.Fatalf("snapshots: %v", r)
	}
	ms, err := decodeManifests(r.stdout)
	if err != nil {
		t.Fatalf("snapshots --json: %v\n%s", err, r.stdout)
	}
	return ms
}

// objectPath is where the local sink keeps an object.
func (f *fixture) objectPath(m *core.Manifest, object string) string {
	return filepath.Join(f.backups, m.Pipeline, string(m.ID), object)
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeFile(t *testing.T, p, content string, mode fs.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// makeOddTree fills dir with what a tree backup must carry: non-ASCII names, spaces, a
// newline in a name, symlinks (relative, absolute, dangling), empty folders, modes
// 0700/0755/0600/0444, a setgid folder, sub-second mtimes and a larger compressible file.
func makeOddTree(t *testing.T, dir string) {
	t.Helper()
	base := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	writeFile(t, filepath.Join(dir, "plain.txt"), "hello\n", 0o644, base)
	writeFile(t, filepath.Join(dir, "ünïcødé naïve.txt"), "non-ascii name\n", 0o600, base.Add(time.Second))
	writeFile(t, filepath.Join(dir, "with space", "file name.txt"), "spaces\n", 0o444, base.Add(2*time.Second))
	writeFile(t, filepath.Join(dir, "new\nline.txt"), "a newline in the name\n", 0o755, base.Add(3*time.Second))
	writeFile(t, filepath.Join(dir, "private", "secret.txt"), "0600 in 0700\n", 0o600, base)
	writeFile(t, filepath.Join(dir, "shared", "group.txt"), "in a setgid folder\n", 0o640, base)
	writeFile(t, filepath.Join(dir, "empty-file"), "", 0o644, base)
	writeFile(t, filepath.Join(dir, "big", "numbers.txt"), strings.Repeat("0123456789abcdef\n", 200000), 0o644, base)
	if err := os.MkdirAll(filepath.Join(dir, "empty", "nested-empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct{ target, name string }{
		{"plain.txt", "link-rel"},
		{"../plain.txt", "with space/link-up"},
		{"/etc/hostname", "link-abs"},
		{"does/not/exist", "link-dangling"},
		{"with space", "link-dir"},
	} {
		if err := os.Symlink(l.target, filepath.Join(dir, l.name)); err != nil {
			t.Fatal(err)
		}
		lmt := base.Add(5 * time.Second)
		if err := lchtimesTest(filepath.Join(dir, l.name), lmt); err != nil {
			t.Fatal(err)
		}
	}
	chmod := map[string]fs.FileMode{"private": 0o700, "shared": 0o755 | fs.ModeSetgid, "empty": 0o755, "empty/nested-empty": 0o700, "with space": 0o750, "big": 0o755}
	for name, mode := range chmod {
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	// Folder mtimes last: creating entries changes them.
	for _, name := range []string{"private", "shared", "empty/nested-empty", "empty", "with space", "big"} {
		mt := base.Add(-time.Hour)
		if err := os.Chtimes(filepath.Join(dir, name), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
}

func lchtimesTest(p string, t time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func decodeManifests(s string) ([]*core.Manifest, error) {
	var ms []*core.Manifest
	err := json.Unmarshal([]byte(s), &ms)
	return ms, err
}

// entryInfo is what a round trip must keep of one entry.
type entryInfo struct {
	mode    fs.FileMode
	mtime   time.Time
	content string // file contents or symlink target
}

// snapshotTree records every entry below dir (not dir itself).
func snapshotTree(t *testing.T, dir string) map[string]entryInfo {
	t.Helper()
	out := map[string]entryInfo{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entryInfo{mode: info.Mode(), mtime: info.ModTime()}
		switch {
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.content = string(b)
		case info.Mode()&fs.ModeSymlink != 0:
			e.content, err = os.Readlink(p)
			if err != nil {
				return err
			}
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareTrees fails the test for every difference in names, types, modes, mtimes,
// contents and symlink targets.
func compareTrees(t *testing.T, want, got map[string]entryInfo, what string) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: %q is missing", what, name)
			continue
		}
		if g.mode != w.mode {
			t.Errorf("%s: %q has mode %v, want %v", what, name, g.mode, w.mode)
		}
		if !g.mtime.Equal(w.mtime) {
			t.Errorf("%s: %q has mtime %v, want %v", what, name, g.mtime, w.mtime)
		}
		if g.content != w.content {
			t.Errorf("%s: %q has other contents (%d bytes, want %d)", what, name, len(g.content), len(w.content))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpected entry %q", what, name)
		}
	}
}

// shell runs a shell pipeline with an explicit environment; tools come from testenv.
func shell(t *testing.T, dir, script string) string {
	t.Helper()
	for _, tool := range []string{"age", "zstd", "tar", "sha256sum"} {
		testenv.Tool(t, tool)
	}
	cmd := exec.Command("/bin/sh", "-ec", script)
	cmd.Dir = dir
	cmd.Env = testenv.Env(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}
