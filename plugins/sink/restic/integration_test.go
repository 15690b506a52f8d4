package restic_test

// Integration tests with the real restic binary, against a local repository and an s3:
// repository on a real MinIO. restic's own `snapshots --json` and `dump` read back what
// nightjar wrote. The engine-level tests use the tree source (a test-only dependency).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/engine"
	"github.com/nightjar-backup/nightjar/core/testenv"
	"github.com/nightjar-backup/nightjar/plugins/sink/restic"
	"github.com/nightjar-backup/nightjar/plugins/source/tree"
)

const testPassword = "correct-horse-battery-staple-42"

// repo is a restic repository for one test, with what restic's own commands need.
type repo struct {
	location string
	pwFile   string
	env      map[string]string // backend credentials
}

func (r repo) cmdEnv(t *testing.T) []string {
	extra := []string{"RESTIC_REPOSITORY=" + r.location, "RESTIC_PASSWORD_FILE=" + r.pwFile}
	for k, v := range r.env {
		extra = append(extra, k+"="+v)
	}
	return testenv.Env(t, extra...)
}

// restic runs restic's own command on the repository and returns its stdout.
func (r repo) restic(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, "restic"), args...)
	cmd.Env = r.cmdEnv(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("restic %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

type resticSnap struct {
	ID       string    `json:"id"`
	ShortID  string    `json:"short_id"`
	Time     time.Time `json:"time"`
	Paths    []string  `json:"paths"`
	Hostname string    `json:"hostname"`
	Tags     []string  `json:"tags"`
}

func (r repo) snapshots(t *testing.T, tags ...string) []resticSnap {
	t.Helper()
	args := []string{"snapshots", "--json"}
	for _, tag := range tags {
		args = append(args, "--tag", tag)
	}
	var out []resticSnap
	if err := json.Unmarshal(r.restic(t, args...), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func writePassword(t *testing.T, pw string) string {
	p := filepath.Join(t.TempDir(), "restic-password")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// localRepo initialises a repository in a temp folder with restic's own init.
func localRepo(t *testing.T) repo {
	t.Helper()
	r := repo{location: filepath.Join(t.TempDir(), "repo"), pwFile: writePassword(t, testPassword)}
	r.restic(t, "init")
	return r
}

func (r repo) size(t *testing.T) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(r.location, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && !d.IsDir() {
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// logBuffer collects a sink's log output.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

func newSink(t *testing.T, r repo, pipeline string, log *slog.Logger, mod func(*restic.Config)) *restic.Sink {
	t.Helper()
	testenv.Tool(t, "restic")
	cfg := restic.Config{Name: "restic", Repository: r.location, PasswordFile: r.pwFile, Env: r.env, Raw: true, Prune: true, LockTimeout: time.Minute}
	if mod != nil {
		mod(&cfg)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := restic.New(context.Background(), cfg, core.Env{Pipeline: pipeline, Host: "testhost", StateDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// makeTree writes a folder of pseudo-random files (seeded: the same every time).
func makeTree(t *testing.T, dir string, mib int) {
	t.Helper()
	rng := rand.New(rand.NewSource(42))
	files := map[string]int{"big.bin": mib << 20, "sub/a.txt": 1000, "sub/deeper/b.bin": 70000, "empty": 0}
	for name, n := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, n)
		rng.Read(b)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func treeSource(t *testing.T, name, dir string) *tree.Source {
	src, err := tree.New(name, dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func runPipeline(t *testing.T, ctx context.Context, name string, sink core.Sink, sources ...core.Source) (*engine.Result, error) {
	t.Helper()
	return engine.Run(ctx, &engine.Pipeline{Name: name, Host: "testhost", Sources: sources,
		Sinks: []engine.NamedSink{{Name: "restic", Sink: sink}}})
}

// checkReadBack checks what restic's own tools see after a run of a tree source.
func checkReadBack(t *testing.T, r repo, pipeline string, src *tree.Source, id core.SnapshotID) {
	t.Helper()
	snaps := r.snapshots(t, "nightjar-snapshot="+string(id))
	paths := map[string]resticSnap{}
	for _, s := range snaps {
		paths[s.Paths[0]] = s
		for _, want := range []string{"nightjar", "nightjar-pipeline=" + pipeline} {
			if !contains(s.Tags, want) {
				t.Errorf("restic snapshot %s has tags %v, want %s among them", s.ShortID, s.Tags, want)
			}
		}
		if s.Hostname != "testhost" {
			t.Errorf("restic snapshot %s has host %q, want testhost", s.ShortID, s.Hostname)
		}
		if !s.Time.Equal(id.Time()) {
			t.Errorf("restic snapshot %s has time %v, want the nightjar snapshot's start %v", s.ShortID, s.Time, id.Time())
		}
	}
	tarPath := "/" + pipeline + "/" + src.Describe().Filename
	manifestPath := "/" + pipeline + "/manifest.json"
	if len(snaps) != 2 || paths[tarPath].ID == "" || paths[manifestPath].ID == "" {
		t.Fatalf("restic snapshots of %s: %+v; want %s and %s", id, snaps, tarPath, manifestPath)
	}
	if !contains(paths[manifestPath].Tags, "nightjar-manifest") || contains(paths[tarPath].Tags, "nightjar-manifest") {
		t.Errorf("only the manifest's restic snapshot should be tagged nightjar-manifest: %+v", snaps)
	}
	// restic dump returns the raw tar, byte for byte what the tree source produces.
	var want bytes.Buffer
	if _, err := src.Snapshot(context.Background(), &want); err != nil {
		t.Fatal(err)
	}
	got := r.restic(t, "dump", paths[tarPath].ShortID, tarPath)
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("restic dump %s: %d bytes, differs from the tree source's %d-byte tar", tarPath, len(got), want.Len())
	}
	m, err := core.DecodeManifest(r.restic(t, "dump", paths[manifestPath].ShortID, manifestPath))
	if err != nil {
		t.Fatal(err)
	}
	a, ok := m.Artifact(src.Describe().Name)
	if m.ID != id || !ok || a.Size != int64(want.Len()) || len(a.Transforms) != 0 || !strings.HasPrefix(paths[tarPath].ID, a.Ref) {
		t.Fatalf("manifest from restic dump: %+v", m)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// restoreAndCompare restores the latest snapshot through the sink and compares the tree.
func restoreAndCompare(t *testing.T, sink core.Sink, src *tree.Source, dir string) {
	t.Helper()
	ctx := context.Background()
	ms, err := sink.List(ctx)
	if err != nil || len(ms) == 0 {
		t.Fatalf("List: %v, %d manifests", err, len(ms))
	}
	m := ms[0]
	a, _ := m.Artifact(src.Describe().Name)
	rc, err := engine.OpenRaw(ctx, sink, m, a, func(map[string]string) (core.Transform, error) {
		return nil, errors.New("no transforms expected")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	target := t.TempDir()
	if err := src.Restore(ctx, rc, target, core.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := engine.Drain(rc); err != nil {
		t.Fatalf("read back %s: %v", a.Name, err)
	}
	compareTrees(t, dir, filepath.Join(target, src.Describe().Name))
}

func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("restored %s differs from the source (%v)", rel, err)
		}
		n++
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("compare trees: %v (%d files)", err, n)
	}
}

func TestLocalRepositoryRoundTripAndDedup(t *testing.T) {
	r := localRepo(t)
	dir := t.TempDir()
	makeTree(t, dir, 8)
	src := treeSource(t, "data", dir)
	sink := newSink(t, r, "substrate", nil, nil)
	ctx := context.Background()

	empty := r.size(t)
	res, err := runPipeline(t, ctx, "substrate", sink, src)
	if err != nil {
		t.Fatal(err)
	}
	checkReadBack(t, r, "substrate", src, res.ID)
	first := r.size(t) - empty

	// An unchanged second run adds almost nothing: the tree's tar is deterministic and
	// restic deduplicates it.
	res2, err := runPipeline(t, ctx, "substrate", sink, src)
	if err != nil {
		t.Fatal(err)
	}
	second := r.size(t) - empty - first
	t.Logf("first run added %d bytes, the unchanged second run %d (%.2f%%)", first, second, 100*float64(second)/float64(first))
	if second > first/50 {
		t.Errorf("unchanged second run added %d bytes to the repository, more than 2%% of the first run's %d", second, first)
	}
	checkReadBack(t, r, "substrate", src, res2.ID)

	ms, err := sink.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].ID != res2.ID || ms[1].ID != res.ID {
		t.Fatalf("List: %v, want [%s %s]", ids(ms), res2.ID, res.ID)
	}
	restoreAndCompare(t, sink, src, dir)
	r.restic(t, "check")

	// Delete forgets both restic snapshots and prunes; the other nightjar snapshot stays.
	if err := sink.Delete(ctx, res.ID); err != nil {
		t.Fatal(err)
	}
	if left := r.snapshots(t, "nightjar-snapshot="+string(res.ID)); len(left) != 0 {
		t.Fatalf("after Delete, restic still lists %+v", left)
	}
	if ms, err := sink.List(ctx); err != nil || len(ms) != 1 || ms[0].ID != res2.ID {
		t.Fatalf("after Delete: List %v, %v", ids(ms), err)
	}
	restoreAndCompare(t, sink, src, dir)
	r.restic(t, "check", "--read-data")
}

func ids(ms []*core.Manifest) []core.SnapshotID {
	var out []core.SnapshotID
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestS3RepositoryOnMinIO(t *testing.T) {
	mc := testenv.StartMinIO(t)
	r := repo{
		location: "s3:http://" + mc.Endpoint + "/nightjar-restic",
		pwFile:   writePassword(t, testPassword),
		env:      map[string]string{"AWS_ACCESS_KEY_ID": mc.AccessKey, "AWS_SECRET_ACCESS_KEY": mc.SecretKey},
	}
	dir := t.TempDir()
	makeTree(t, dir, 4)
	src := treeSource(t, "data", dir)
	log, logs := logBuffer()
	// init: true creates the repository (and the bucket) on first use.
	sink := newSink(t, r, "spaces", log, func(c *restic.Config) { c.Init = true })
	ctx := context.Background()
	res, err := runPipeline(t, ctx, "spaces", sink, src)
	if err != nil {
		t.Fatal(err)
	}
	checkReadBack(t, r, "spaces", src, res.ID)
	restoreAndCompare(t, sink, src, dir)
	if _, err := runPipeline(t, ctx, "spaces", sink, src); err != nil {
		t.Fatal(err)
	}
	if err := sink.Delete(ctx, res.ID); err != nil {
		t.Fatal(err)
	}
	if left := r.snapshots(t, "nightjar-pipeline=spaces"); len(left) != 2 {
		t.Fatalf("after deleting one of two nightjar snapshots, restic lists %d snapshots, want 2", len(left))
	}
	r.restic(t, "check")
	if strings.Contains(logs.String(), mc.SecretKey) {
		t.Fatal("the S3 secret key reached the log")
	}
}

func TestWrongPasswordFailsAndIsNeverPrinted(t *testing.T) {
	r := localRepo(t)
	dir := t.TempDir()
	makeTree(t, dir, 1)
	const wrong = "wrong-password-never-print-me-7391"
	log, logs := logBuffer()
	sink := newSink(t, r, "p", log, func(c *restic.Config) { c.PasswordFile, c.Password = "", wrong })
	res, err := runPipeline(t, context.Background(), "p", sink, treeSource(t, "data", dir))
	if err == nil || res.Committed() != 0 {
		t.Fatal("a run with a wrong password committed")
	}
	msg := err.Error()
	if !strings.Contains(msg, "wrong password") {
		t.Errorf("error does not say the password is wrong: %s", msg)
	}
	_, lerr := sink.List(context.Background())
	if lerr == nil || !strings.Contains(lerr.Error(), "wrong password") {
		t.Errorf("List with a wrong password: %v", lerr)
	}
	for what, s := range map[string]string{"run error": msg, "list error": fmt.Sprint(lerr), "log": logs.String()} {
		if strings.Contains(s, wrong) {
			t.Errorf("the password appears in the %s: %s", what, s)
		}
	}
	if n := len(r.snapshots(t)); n != 0 {
		t.Errorf("repository has %d snapshots after a failed run", n)
	}
}

func TestUninitialisedRepository(t *testing.T) {
	testenv.Tool(t, "restic")
	r := repo{location: filepath.Join(t.TempDir(), "nothing-here"), pwFile: writePassword(t, testPassword)}
	sink := newSink(t, r, "p", nil, nil)
	_, err := sink.List(context.Background())
	if err == nil || !strings.Contains(err.Error(), "restic init") || !strings.Contains(err.Error(), "init: true") {
		t.Fatalf("List of a missing repository: %v; want a hint to run restic init or set init: true", err)
	}
	sink = newSink(t, r, "p", nil, func(c *restic.Config) { c.Init = true })
	if ms, err := sink.List(context.Background()); err != nil || len(ms) != 0 {
		t.Fatalf("List with init: true: %v, %v", ms, err)
	}
	r.restic(t, "cat", "config") // restic itself opens the new repository with the password
}

// wrapper writes a restic wrapper script that records its pid (for artifact backups) and its
// environment, then execs the real restic.
func wrapper(t *testing.T) (bin, pidFile, envFile string) {
	t.Helper()
	dir := t.TempDir()
	bin, pidFile, envFile = filepath.Join(dir, "restic-wrapper"), filepath.Join(dir, "pid"), filepath.Join(dir, "env")
	script := fmt.Sprintf("#!/bin/sh\nenv > %s\ncase \" $* \" in *nightjar-manifest*) ;; *\" backup \"*) echo $$ > %s.tmp; mv %s.tmp %s;; esac\nexec %s \"$@\"\n",
		envFile, pidFile, pidFile, pidFile, testenv.Tool(t, "restic"))
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, pidFile, envFile
}

// gatedSource writes n bytes, then waits for release before writing n more.
type gatedSource struct {
	n       int
	started chan struct{}
	release chan struct{}
	fail    error // returned after the first half instead of continuing, when set
}

func (g *gatedSource) Describe() core.ArtifactSpec {
	return core.ArtifactSpec{Name: "gated", Kind: "test", Filename: "gated.bin"}
}

func (g *gatedSource) Snapshot(ctx context.Context, w io.Writer) (map[string]string, error) {
	b := bytes.Repeat([]byte("nightjar"), g.n/8)
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	close(g.started)
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if g.fail != nil {
		return nil, g.fail
	}
	_, err := w.Write(b)
	return nil, err
}

func waitFile(t *testing.T, p string) string {
	t.Helper()
	for i := 0; i < 600; i++ {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", p)
	return ""
}

func TestResticKilledMidBackupLeavesNoCompleteSnapshot(t *testing.T) {
	r := localRepo(t)
	bin, pidFile, _ := wrapper(t)
	sink := newSink(t, r, "p", nil, func(c *restic.Config) { c.Binary = bin })
	dir := t.TempDir()
	makeTree(t, dir, 1)
	good, err := runPipeline(t, context.Background(), "p", sink, treeSource(t, "data", dir))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(pidFile)
	src := &gatedSource{n: 4 << 20, started: make(chan struct{}), release: make(chan struct{})}
	go func() {
		<-src.started
		var pid int
		fmt.Sscan(waitFile(t, pidFile), &pid)
		time.Sleep(300 * time.Millisecond) // let restic read some of it
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Errorf("kill restic: %v", err)
		}
		close(src.release)
	}()
	res, err := runPipeline(t, context.Background(), "p", sink, src)
	if err == nil || res.Committed() != 0 {
		t.Fatalf("run with restic killed mid-backup: err %v, committed %d", err, res.Committed())
	}
	if m := r.snapshots(t, "nightjar-snapshot="+string(res.ID)); len(m) != 0 {
		t.Fatalf("restic snapshots of the killed run exist: %+v", m)
	}
	if ms, err := sink.List(context.Background()); err != nil || len(ms) != 1 || ms[0].ID != good.ID {
		t.Fatalf("List after a killed backup: %v, %v; want only %s", ids(ms), err, good.ID)
	}
	// The killed restic left a stale lock; forget and prune need an exclusive lock, so the
	// sink removes stale locks (restic unlock) and goes on.
	if err := sink.Delete(context.Background(), good.ID); err != nil {
		t.Fatalf("Delete after a killed backup: %v", err)
	}
	r.restic(t, "check")
	if _, err := runPipeline(t, context.Background(), "p", sink, treeSource(t, "data", dir)); err != nil {
		t.Fatalf("next run after a killed backup: %v", err)
	}
}

func TestCancelledRunStopsResticAndStoresNothing(t *testing.T) {
	r := localRepo(t)
	bin, pidFile, _ := wrapper(t)
	sink := newSink(t, r, "p", nil, func(c *restic.Config) { c.Binary = bin })
	src := &gatedSource{n: 2 << 20, started: make(chan struct{}), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	var pid int
	go func() {
		<-src.started
		fmt.Sscan(waitFile(t, pidFile), &pid)
		cancel()
	}()
	res, err := runPipeline(t, ctx, "p", sink, src)
	if err == nil || res.Committed() != 0 {
		t.Fatalf("cancelled run: err %v", err)
	}
	if pid == 0 || syscall.Kill(pid, 0) == nil {
		t.Fatalf("restic (pid %d) is still running after the run's context was cancelled", pid)
	}
	if n := r.snapshots(t, "nightjar"); len(n) != 0 {
		t.Fatalf("cancelled run left restic snapshots: %+v", n)
	}
}

func TestSourceFailureNeverStoresATruncatedFile(t *testing.T) {
	r := localRepo(t)
	sink := newSink(t, r, "p", nil, nil)
	id := core.NewSnapshotID(time.Now())
	pr, pw := io.Pipe()
	go func() {
		pw.Write(bytes.Repeat([]byte{7}, 3<<20))
		time.Sleep(200 * time.Millisecond)
		pw.CloseWithError(errors.New("source broke"))
	}()
	_, err := sink.Put(context.Background(), id, "data.tar", pr)
	if err == nil || !strings.Contains(err.Error(), "source broke") {
		t.Fatalf("Put of a failing stream: %v", err)
	}
	// Not even a leftover: restic was stopped before it saw an end of input.
	if n := r.snapshots(t, "nightjar"); len(n) != 0 {
		t.Fatalf("a failed stream left restic snapshots: %+v", n)
	}
}

func TestLeftovers(t *testing.T) {
	r := localRepo(t)
	sink := newSink(t, r, "p", nil, nil)
	ctx := context.Background()
	id := core.NewSnapshotID(time.Now())
	st, err := sink.Put(ctx, id, "a.bin", strings.NewReader("artifact without a manifest"))
	if err != nil || st.Size != 27 || st.Ref == "" {
		t.Fatalf("Put: %+v, %v", st, err)
	}
	if ms, err := sink.List(ctx); err != nil || len(ms) != 0 {
		t.Fatalf("an uncommitted snapshot is listed: %v %v", ids(ms), err)
	}
	lo, err := sink.Leftovers(ctx)
	if err != nil || len(lo) != 1 || lo[0].ID != id || lo[0].Objects != 1 {
		t.Fatalf("Leftovers: %+v, %v", lo, err)
	}
	if err := sink.DeleteLeftover(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n := r.snapshots(t, "nightjar"); len(n) != 0 {
		t.Fatalf("after DeleteLeftover restic lists %+v", n)
	}
	// A manifest naming an artifact that was never stored is refused.
	m := &core.Manifest{Format: core.ManifestFormat, ID: id, Pipeline: "p", Artifacts: []core.Artifact{{Name: "x", Object: "x.bin", Ref: "deadbeef"}}}
	if err := sink.Commit(ctx, m); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Commit of a manifest naming a missing artifact: %v", err)
	}
}

func TestLockHeldByAnotherResticIsWaitedFor(t *testing.T) {
	r := localRepo(t)
	sink := newSink(t, r, "p", nil, nil)
	ctx := context.Background()
	dir := t.TempDir()
	makeTree(t, dir, 1)
	res, err := runPipeline(t, ctx, "p", sink, treeSource(t, "data", dir))
	if err != nil {
		t.Fatal(err)
	}
	// A live restic backup holds a lock while it waits for its stdin; forget needs an
	// exclusive one.
	hold := func() (release func()) {
		cmd := exec.Command(testenv.Tool(t, "restic"), "backup", "--stdin", "--stdin-filename", "holder", "--tag", "holder")
		cmd.Env = r.cmdEnv(t)
		w, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 200; i++ {
			if es, _ := os.ReadDir(filepath.Join(r.location, "locks")); len(es) > 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		return func() { w.Close(); cmd.Wait() }
	}

	// With a short lock_timeout the sink gives up with a clear error.
	short := newSink(t, r, "p", nil, func(c *restic.Config) { c.LockTimeout = 2 * time.Second })
	release := hold()
	err = short.Delete(ctx, res.ID)
	release()
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("Delete while locked, lock_timeout 2s: %v", err)
	}
	// With time to wait, it succeeds once the other restic is done.
	release = hold()
	go func() { time.Sleep(2 * time.Second); release() }()
	if err := sink.Delete(ctx, res.ID); err != nil {
		t.Fatalf("Delete while another restic held the lock for 2s: %v", err)
	}
	if n := r.snapshots(t, "nightjar-snapshot="+string(res.ID)); len(n) != 0 {
		t.Fatalf("after Delete restic still lists %+v", n)
	}
}

func TestChildEnvironmentIsExplicit(t *testing.T) {
	r := localRepo(t)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "ambient-secret-must-not-leak")
	t.Setenv("RESTIC_PASSWORD", "ambient-password")
	t.Setenv("HTTPS_PROXY", "http://proxy.invalid:1")
	bin, _, envFile := wrapper(t)
	sink := newSink(t, r, "p", nil, func(c *restic.Config) {
		c.Binary = bin
		c.Env = map[string]string{"B2_ACCOUNT_ID": "configured"}
	})
	if _, err := sink.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	for _, shell := range []string{"PWD", "SHLVL", "_", "OLDPWD"} { // added by /bin/sh
		delete(got, shell)
	}
	allowed := map[string]bool{"PATH": true, "HOME": true, "TMPDIR": true, "TZ": true,
		"RESTIC_REPOSITORY": true, "RESTIC_PASSWORD_FILE": true, "RESTIC_CACHE_DIR": true, "B2_ACCOUNT_ID": true}
	for k := range got {
		if !allowed[k] {
			t.Errorf("restic got %s from nightjar's environment", k)
		}
	}
	if got["RESTIC_PASSWORD_FILE"] != r.pwFile || got["B2_ACCOUNT_ID"] != "configured" || got["TZ"] != "UTC" {
		t.Errorf("restic's environment: %v", got)
	}
}

// TestBackupWaitsForAnExclusiveLock: restic takes its lock before it reads stdin, so a Put
// that met a prune's exclusive lock (a paused prune) is replayed whole into the next
// attempt once the lock is gone.
func TestBackupWaitsForAnExclusiveLock(t *testing.T) {
	r := localRepo(t)
	log, logs := logBuffer()
	sink := newSink(t, r, "p", log, nil)
	ctx := context.Background()
	dir := t.TempDir()
	makeTree(t, dir, 2)
	if _, err := runPipeline(t, ctx, "p", sink, treeSource(t, "data", dir)); err != nil {
		t.Fatal(err)
	}
	var holder *exec.Cmd
	for attempt := 0; attempt < 10 && holder == nil; attempt++ {
		cmd := exec.Command(testenv.Tool(t, "restic"), "prune") // takes an exclusive lock
		cmd.Env = r.cmdEnv(t)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2000; i++ {
			if hasLock(r) {
				if syscall.Kill(cmd.Process.Pid, syscall.SIGSTOP) == nil {
					holder = cmd
				}
				break
			}
			time.Sleep(time.Millisecond)
		}
		if holder == nil {
			cmd.Wait()
			continue
		}
		// The lock file may belong to a prune that already finished: make sure it is there.
		if !hasLock(r) {
			syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
			cmd.Wait()
			holder = nil
		}
	}
	if holder == nil {
		t.Fatal("could not catch restic prune holding its exclusive lock")
	}
	go func() {
		time.Sleep(3 * time.Second)
		syscall.Kill(holder.Process.Pid, syscall.SIGCONT)
		holder.Wait()
	}()
	data := bytes.Repeat([]byte("replayed after the lock "), 200000) // 4.8 MB
	id := core.NewSnapshotID(time.Now())
	st, err := sink.Put(ctx, id, "blob.bin", bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Put while an exclusive lock was held for 3s: %v", err)
	}
	if st.Size != int64(len(data)) {
		t.Fatalf("Put stored %d bytes, want %d", st.Size, len(data))
	}
	if !strings.Contains(logs.String(), "locked by another process") {
		t.Errorf("the Put did not meet the lock (log: %s)", logs.String())
	}
	got := r.restic(t, "dump", st.Ref, "/p/blob.bin")
	if !bytes.Equal(got, data) {
		t.Fatalf("restic dump after a replayed Put: %d bytes, want %d identical bytes", len(got), len(data))
	}
	// The manifest's restic, started with the Put, met the lock too: Commit stores the
	// manifest again the ordinary way.
	m := &core.Manifest{Format: core.ManifestFormat, ID: id, Pipeline: "p", Host: "testhost",
		Artifacts: []core.Artifact{{Name: "blob", Object: "blob.bin", Size: st.Size, StoredSize: st.Size, Ref: st.Ref}}}
	if err := sink.Commit(ctx, m); err != nil {
		t.Fatalf("Commit after the lock: %v", err)
	}
	ms, err := sink.List(ctx)
	if err != nil || len(ms) != 2 || ms[0].ID != id {
		t.Fatalf("List after Commit: %v, %v", ids(ms), err)
	}
	if n := r.snapshots(t, "nightjar-manifest,nightjar-snapshot="+string(id)); len(n) != 1 {
		t.Fatalf("%d manifest snapshots for %s, want 1", len(n), id)
	}
}

// hasLock reports whether a lock file is in place (not one still being written: the local
// backend writes <id>-tmp-<random> and renames it).
func hasLock(r repo) bool {
	es, _ := os.ReadDir(filepath.Join(r.location, "locks"))
	for _, e := range es {
		if len(e.Name()) == 64 {
			return true
		}
	}
	return false
}
