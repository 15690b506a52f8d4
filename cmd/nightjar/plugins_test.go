package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/testenv"
)

// Integration tests of external sink plugins through the real nightjar binary and the
// example plugin (sdk/examples/sink-folder), both built here.

var builtBins = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "nightjar-cli-plugins-")
	if err != nil {
		return "", err
	}
	for _, b := range []struct{ out, pkg string }{
		{"nightjar", "./cmd/nightjar"},
		{"nightjar-sink-folder", "./sdk/examples/sink-folder"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", errors.New(string(out))
		}
	}
	return dir, nil
})

// bins returns the folder with nightjar and the example plugin, built once per test binary
// and removed by TestMain.
func bins(t *testing.T) string {
	t.Helper()
	dir, err := builtBins()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := builtBins(); err == nil {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

type pipelineDirs struct {
	base, src, folder, local, config, key string
}

// writePipeline writes a config: tree source of src → [zstd → age] → folder plugin sink
// (and a local sink when withLocal).
func writePipeline(t *testing.T, sinkType string, withLocal, encrypt bool) pipelineDirs {
	t.Helper()
	base := t.TempDir()
	d := pipelineDirs{base: base, src: filepath.Join(base, "src"), folder: filepath.Join(base, "folder"),
		local: filepath.Join(base, "local"), config: filepath.Join(base, "p.yaml"), key: filepath.Join(base, "key.txt")}
	if err := os.MkdirAll(d.src, 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\npipeline: plug\nstate_dir: %s\nsources:\n  - {name: data, type: tree, path: %s}\n", filepath.Join(base, "state"), d.src)
	b.WriteString("transforms:\n  - {type: zstd, level: 1}\n")
	if encrypt {
		out, err := testenv.Command(t, "age-keygen", "-o", d.key).CombinedOutput()
		if err != nil {
			t.Fatalf("age-keygen: %v\n%s", err, out)
		}
		recipient := strings.TrimSpace(strings.TrimPrefix(string(out), "Public key: "))
		fmt.Fprintf(&b, "  - {type: age, recipients: [%q]}\n", recipient)
	}
	fmt.Fprintf(&b, "sinks:\n  - {name: remote, type: %s, root: %s}\n", sinkType, d.folder)
	if withLocal {
		fmt.Fprintf(&b, "  - {name: loc, type: local, path: %s}\n", d.local)
	}
	fmt.Fprintf(&b, "plugins: {dir: %s}\n", bins(t))
	if err := os.WriteFile(d.config, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func nightjarCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(filepath.Join(bins(t), "nightjar"), args...)
	cmd.Env = testenv.Env(t, "XDG_DATA_HOME="+t.TempDir(), "NIGHTJAR_LOG_LEVEL=warn")
	return cmd
}

func runNightjar(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := nightjarCmd(t, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("nightjar %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

func writeRandom(t *testing.T, p string, n int) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ", a, b)
	}
}

func TestPluginRoundTrip(t *testing.T) {
	d := writePipeline(t, "folder", false, true)
	writeRandom(t, filepath.Join(d.src, "a.bin"), 3<<20+17)
	if err := os.WriteFile(filepath.Join(d.src, "notes.txt"), []byte("hello plugin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runNightjar(t, "run", "-c", d.config); code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code := runNightjar(t, "snapshots", "-c", d.config, "--json")
	if code != 0 {
		t.Fatalf("snapshots: exit %d: %s", code, errOut)
	}
	var ms []core.Manifest
	if err := json.Unmarshal([]byte(out), &ms); err != nil || len(ms) != 1 {
		t.Fatalf("snapshots --json: %v, %d manifests\n%s", err, len(ms), out)
	}

	// nightjar restore through the plugin.
	restored := filepath.Join(d.base, "restored")
	if out, errOut, code := runNightjar(t, "restore", "-c", d.config, "--to", restored, "--identity", d.key); code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", code, out, errOut)
	}
	sameFile(t, filepath.Join(d.src, "a.bin"), filepath.Join(restored, "data", "a.bin"))
	sameFile(t, filepath.Join(d.src, "notes.txt"), filepath.Join(restored, "data", "notes.txt"))

	// Stock tools on the object the plugin stored.
	obj := filepath.Join(d.folder, "plug", string(ms[0].ID), ms[0].Artifacts[0].Object)
	stock := filepath.Join(d.base, "stock")
	if err := os.MkdirAll(stock, 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("%q -d -i %q %q | %q -d | tar -x -C %q", testenv.Tool(t, "age"), d.key, obj, testenv.Tool(t, "zstd"), stock)
	cmd := exec.Command("bash", "-o", "pipefail", "-c", script)
	cmd.Env = testenv.Env(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("age -d | zstd -d | tar -x: %v\n%s", err, out)
	}
	sameFile(t, filepath.Join(d.src, "a.bin"), filepath.Join(stock, "a.bin"))
	sameFile(t, filepath.Join(d.src, "notes.txt"), filepath.Join(stock, "notes.txt"))

	// nightjar plugins lists it.
	out, errOut, code = runNightjar(t, "plugins", "-c", d.config, "--json")
	if code != 0 || !strings.Contains(out, `"type": "folder"`) || !strings.Contains(out, `"protocol": [`) {
		t.Fatalf("plugins --json: exit %d\n%s%s", code, out, errOut)
	}
}

func TestUnknownSinkTypeIsConfigError(t *testing.T) {
	d := writePipeline(t, "acme-tape", false, false)
	_, errOut, code := runNightjar(t, "run", "-c", d.config)
	if code != exitUsage {
		t.Fatalf("exit %d, want %d\n%s", code, exitUsage, errOut)
	}
	for _, want := range []string{`"acme-tape"`, "nightjar-sink-acme-tape", "sinks[0].type"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr does not mention %s:\n%s", want, errOut)
		}
	}
}

// childPlugin returns the pid of a nightjar-sink-folder process whose parent is ppid.
func childPlugin(ppid int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := procStat(pid); ok && st.ppid == ppid && strings.HasPrefix(st.comm, "nightjar-sink-f") && st.state != "Z" {
			return pid
		}
	}
	return 0
}

type stat struct {
	comm, state string
	ppid        int
}

func procStat(pid int) (stat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, false
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < 0 {
		return stat{}, false
	}
	f := strings.Fields(s[closing+1:])
	if len(f) < 2 {
		return stat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return stat{comm: s[open+1 : closing], state: f[0], ppid: ppid}, true
}

func alive(pid int) bool {
	st, ok := procStat(pid)
	return ok && st.state != "Z"
}

func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func uploading(root string) bool {
	found := false
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".folder-tmp-") {
			found = true
		}
		return nil
	})
	return found
}

// sparse makes a large file that costs no disk and little time per GiB to read and compress.
func sparse(t *testing.T, p string, size int64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

func TestHostKilledLeavesNoOrphanPlugin(t *testing.T) {
	d := writePipeline(t, "folder", false, false)
	sparse(t, filepath.Join(d.src, "huge.bin"), 64<<30) // the run is killed long before it ends
	cmd := nightjarCmd(t, "run", "-c", d.config)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pid int
	waitUntil(t, "the plugin to start uploading", time.Minute, func() bool {
		pid = childPlugin(cmd.Process.Pid)
		return pid != 0 && uploading(d.folder)
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitUntil(t, fmt.Sprintf("the orphaned plugin (pid %d) to exit", pid), 10*time.Second, func() bool { return !alive(pid) })
	if m := findManifests(d.folder); len(m) != 0 {
		t.Fatalf("a killed run left manifests: %v", m)
	}
}

func TestPluginKilledMidUploadCLI(t *testing.T) {
	d := writePipeline(t, "folder", true, false)
	writeRandom(t, filepath.Join(d.src, "a.bin"), 1<<20)
	sparse(t, filepath.Join(d.src, "zeros.bin"), 4<<30)
	cmd := nightjarCmd(t, "run", "-c", d.config)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pid int
	waitUntil(t, "the plugin to start uploading", time.Minute, func() bool {
		pid = childPlugin(cmd.Process.Pid)
		return pid != 0 && uploading(d.folder)
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitPartial {
		t.Fatalf("run after the plugin was killed: %v, want exit %d (partial)\n%s", err, exitPartial, out.String())
	}
	t.Logf("run output:\n%s", out.String())
	if !strings.Contains(out.String(), "nightjar-sink-folder") {
		t.Errorf("the report does not name the plugin:\n%s", out.String())
	}
	if m := findManifests(d.folder); len(m) != 0 {
		t.Errorf("the killed plugin's sink holds a committed snapshot: %v", m)
	}
	if m := findManifests(d.local); len(m) != 1 {
		t.Errorf("the local sink holds %d snapshots, want 1 (other sinks still commit)", len(m))
	}
}

func findManifests(root string) []string {
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == core.ManifestName {
			out = append(out, p)
		}
		return nil
	})
	return out
}
