package pluginhost_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/engine"
	"github.com/nightjar-backup/nightjar/core/pluginhost"
	"github.com/nightjar-backup/nightjar/core/snapstore"
	"github.com/nightjar-backup/nightjar/core/testenv"
	"github.com/nightjar-backup/nightjar/plugins/sink/local"
)

// binaries builds the example folder plugin and the misbehaving test plugin once.
var binaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "nightjar-plugins-")
	if err != nil {
		return "", err
	}
	root := testenv.RepoRoot()
	for _, b := range []struct{ out, pkg string }{
		{"nightjar-sink-folder", "./sdk/examples/sink-folder"},
		{"badplugin", "./core/pluginhost/testdata/badplugin"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", errors.New(string(out))
		}
	}
	for _, name := range []string{"nightjar-sink-junk", "nightjar-sink-future"} {
		if err := os.Link(filepath.Join(dir, "badplugin"), filepath.Join(dir, name)); err != nil {
			return "", err
		}
	}
	return dir, nil
})

func binDir(t *testing.T) string {
	t.Helper()
	dir, err := binaries()
	if err != nil {
		t.Fatalf("build plugins: %v", err)
	}
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := binaries(); err == nil && dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func makeExec(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDiscoveryOrder(t *testing.T) {
	base := t.TempDir()
	cfgDir, path1, path2, xdg := filepath.Join(base, "cfg"), filepath.Join(base, "p1"), filepath.Join(base, "p2"), filepath.Join(base, "xdg")
	xdgPlugins := filepath.Join(xdg, "nightjar", "plugins")
	makeExec(t, cfgDir, "nightjar-sink-a", 0o755)
	makeExec(t, path1, "nightjar-sink-a", 0o755)
	makeExec(t, path1, "nightjar-sink-b", 0o755)
	makeExec(t, path2, "nightjar-sink-c", 0o644) // not executable: ignored
	makeExec(t, xdgPlugins, "nightjar-sink-c", 0o755)
	makeExec(t, xdgPlugins, "nightjar-sink-Bad!", 0o755) // not a valid type: ignored
	makeExec(t, xdgPlugins, "other-tool", 0o755)
	h := pluginhost.New(nil, env(map[string]string{"NIGHTJAR_PLUGIN_PATH": path1 + ":" + path2, "XDG_DATA_HOME": xdg}))
	s := core.PluginSettings{Dir: cfgDir}

	tests := []struct {
		typ, want string
	}{
		{"a", filepath.Join(cfgDir, "nightjar-sink-a")},
		{"b", filepath.Join(path1, "nightjar-sink-b")},
		{"c", filepath.Join(xdgPlugins, "nightjar-sink-c")},
		{"d", ""},
		{"../cfg/nightjar-sink-a", ""},
	}
	for _, tc := range tests {
		got, ok, err := h.Find(tc.typ, s)
		if err != nil || ok != (tc.want != "") || got != tc.want {
			t.Errorf("Find(%q) = %q, %v, %v; want %q", tc.typ, got, ok, err, tc.want)
		}
	}
	found := h.Discover(s)
	var names []string
	for _, f := range found {
		n := f.Type
		if f.Shadowed {
			n += "(shadowed)"
		}
		names = append(names, n)
	}
	if got := strings.Join(names, ","); got != "a,a(shadowed),b,c" {
		t.Errorf("Discover = %s", got)
	}
	// Without XDG_DATA_HOME, ~/.local/share is searched.
	h = pluginhost.New(nil, env(map[string]string{"HOME": "/home/x"}))
	if dirs := h.SearchDirs(core.PluginSettings{}); len(dirs) != 1 || dirs[0] != "/home/x/.local/share/nightjar/plugins" {
		t.Errorf("SearchDirs = %v", dirs)
	}
}

func startFolder(t *testing.T, s core.PluginSettings) (*pluginhost.Plugin, error) {
	t.Helper()
	h := pluginhost.New(slog.New(slog.DiscardHandler), env(nil))
	path := filepath.Join(binDir(t), "nightjar-sink-folder")
	p, err := h.Start(context.Background(), "folder", path, s, nil)
	if p != nil {
		t.Cleanup(func() { p.Close() })
	}
	return p, err
}

func TestPluginDoesNotSeeHostEnvironment(t *testing.T) {
	t.Setenv("NIGHTJAR_TEST_SECRET", "hunter2-do-not-leak")
	p, err := startFolder(t, core.PluginSettings{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("/proc", itoa(p.Pid()), "environ"))
	if err != nil {
		t.Fatalf("read the plugin's environment: %v", err)
	}
	vars := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	var names []string
	for _, v := range vars {
		name, _, _ := strings.Cut(v, "=")
		names = append(names, name)
		if strings.Contains(v, "hunter2") {
			t.Errorf("the plugin sees the host's secret: %s", name)
		}
		if name == "PATH" || name == "HOME" {
			t.Errorf("the plugin inherited the host's %s", name)
		}
	}
	if !strings.Contains(strings.Join(names, " "), "NIGHTJAR_SINK_PLUGIN") {
		t.Fatalf("plugin environment %v lacks the handshake cookie: wrong process?", names)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestPluginGetsADataRing: Put data travels through shared memory the plugin inherits
// (sdk/blob's ring.go), not through gRPC.
func TestPluginGetsADataRing(t *testing.T) {
	p, err := startFolder(t, core.PluginSettings{})
	if err != nil {
		t.Fatal(err)
	}
	proc := filepath.Join("/proc", itoa(p.Pid()))
	b, err := os.ReadFile(filepath.Join(proc, "environ"))
	if err != nil {
		t.Fatal(err)
	}
	const want = "NIGHTJAR_BLOB_RING=3,4"
	if !strings.Contains(string(b), want+"\x00") {
		t.Fatalf("the plugin's environment lacks %s", want)
	}
	if maps, err := os.ReadFile(filepath.Join(proc, "maps")); err != nil || !strings.Contains(string(maps), "/memfd:nightjar-blob-ring") {
		t.Fatalf("the plugin has not mapped the ring (%v)", err)
	}
	sock, err2 := os.Readlink(filepath.Join(proc, "fd", "4"))
	if err2 != nil || !strings.HasPrefix(sock, "socket:") {
		t.Fatalf("the plugin's fd 4 is %q (%v), want its end of the ring's socket", sock, err2)
	}
	// nightjar keeps neither of the plugin's ends: with them open here, a wait on the
	// ring would block instead of failing when the plugin dies.
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && (l == sock || strings.Contains(l, "memfd:nightjar-blob-ring")) {
			t.Errorf("nightjar still holds %s (fd %s) after the plugin started", l, fd.Name())
		}
	}
}

func TestPins(t *testing.T) {
	path := filepath.Join(binDir(t), "nightjar-sink-folder")
	sum, err := pluginhost.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := startFolder(t, core.PluginSettings{Pins: map[string]string{"folder": sum}}); err != nil {
		t.Fatalf("matching pin: %v", err)
	}
	wrong := strings.Repeat("0", 64)
	_, err = startFolder(t, core.PluginSettings{Pins: map[string]string{"folder": wrong}})
	if err == nil || !strings.Contains(err.Error(), "refusing to run it") || !strings.Contains(err.Error(), sum) {
		t.Fatalf("wrong pin: %v, want a refusal naming the file's sha256", err)
	}
	_, err = startFolder(t, core.PluginSettings{Pins: map[string]string{"folder": "abc"}})
	if err == nil || !strings.Contains(err.Error(), "plugins.pins.folder") {
		t.Fatalf("malformed pin: %v", err)
	}
}

func TestJunkBeforeHandshake(t *testing.T) {
	h := pluginhost.New(nil, env(nil))
	_, err := h.Start(context.Background(), "junk", filepath.Join(binDir(t), "nightjar-sink-junk"), core.PluginSettings{}, nil)
	if err == nil {
		t.Fatal("a plugin that prints junk before its handshake was accepted")
	}
	for _, want := range []string{"nightjar-sink-junk", "Welcome to JunkStore 3000!", "before its handshake"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestProtocolVersionMismatch(t *testing.T) {
	h := pluginhost.New(nil, env(nil))
	_, err := h.Start(context.Background(), "future", filepath.Join(binDir(t), "nightjar-sink-future"), core.PluginSettings{}, nil)
	if err == nil {
		t.Fatal("a plugin speaking only protocol v2 was accepted")
	}
	for _, want := range []string{"nightjar-sink-future", "protocol version mismatch", "v1", "Plugin version: 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestResolverValidatesFieldsLikeBuiltins(t *testing.T) {
	h := pluginhost.New(nil, env(nil))
	defer h.Close()
	plug, ok, err := h.Resolver()(context.Background(), "folder", core.PluginSettings{Dir: binDir(t)})
	if err != nil || !ok {
		t.Fatalf("resolve folder: %v, %v", ok, err)
	}
	if len(plug.Fields) != 1 || plug.Fields[0].Name != "root" || plug.Fields[0].Kind != core.KindPath || !plug.Fields[0].Required {
		t.Fatalf("fields = %+v", plug.Fields)
	}
	c := &core.Component{Name: "x", Type: "folder", Key: "sinks[0]", File: "p.yaml"}
	errs := c.DecodeFields(plug.Fields, map[string]any{"rooot": "/x"}, nil, "/", nil)
	if len(errs) != 2 || !strings.Contains(errs.Error(), `did you mean "root"`) || !strings.Contains(errs.Error(), `required key "root" is missing`) {
		t.Fatalf("DecodeFields errors = %v", errs)
	}
	if _, ok, err := h.Resolver()(context.Background(), "nosuch", core.PluginSettings{Dir: binDir(t)}); ok || err != nil {
		t.Fatalf("unknown type: ok=%v err=%v", ok, err)
	}
}

// gatedSource writes a first part, signals, waits to be released, then writes the rest.
type gatedSource struct {
	first, rest int
	reached     chan struct{}
	release     chan struct{}
}

func (g *gatedSource) Describe() core.ArtifactSpec {
	return core.ArtifactSpec{Name: "data", Kind: "test", Filename: "data.bin"}
}

func (g *gatedSource) Snapshot(ctx context.Context, w io.Writer) (map[string]string, error) {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	write := func(n int) error {
		for n > 0 {
			k := min(n, len(buf))
			if _, err := w.Write(buf[:k]); err != nil {
				return err
			}
			n -= k
		}
		return nil
	}
	if err := write(g.first); err != nil {
		return nil, err
	}
	close(g.reached)
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return nil, write(g.rest)
}

func TestPluginKilledMidUpload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := pluginhost.New(nil, env(nil))
	defer h.Close()
	plug, ok, err := h.Resolver()(ctx, "folder", core.PluginSettings{Dir: binDir(t)})
	if err != nil || !ok {
		t.Fatalf("resolve: %v %v", ok, err)
	}
	root, localDir := t.TempDir(), t.TempDir()
	comp := core.NewComponent("remote", "folder", map[string]any{"root": root})
	e := core.Env{Pipeline: "p", Logger: slog.New(slog.DiscardHandler)}
	remote, err := plug.New(ctx, comp, e)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.(io.Closer).Close()
	lst, err := local.NewStore(localDir)
	if err != nil {
		t.Fatal(err)
	}
	src := &gatedSource{first: 8 << 20, rest: 8 << 20, reached: make(chan struct{}), release: make(chan struct{})}
	p := &engine.Pipeline{Name: "p", Host: "h", Sources: []core.Source{src},
		Sinks: []engine.NamedSink{{Name: "remote", Sink: remote}, {Name: "loc", Sink: snapstore.New(lst, "p")}}}

	type result struct {
		res *engine.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := engine.Run(ctx, p)
		done <- result{res, err}
	}()
	<-src.reached
	waitFor(t, "the plugin to receive data", func() bool { return hasTemp(root) })
	pid := remote.(*pluginhost.Sink).Plugin.Pid()
	proc, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Kill(); err != nil {
		t.Fatalf("SIGKILL plugin: %v", err)
	}
	close(src.release)
	r := <-done

	if !errors.Is(r.err, core.ErrPartial) {
		t.Fatalf("run error = %v, want partial (the local sink commits)", r.err)
	}
	if !strings.Contains(r.err.Error(), "nightjar-sink-folder") {
		t.Errorf("run error %q does not name the plugin", r.err)
	}
	for _, s := range r.res.Sinks {
		if s.Committed != (s.Name == "loc") {
			t.Errorf("sink %s committed=%v (err %v)", s.Name, s.Committed, s.Err)
		}
	}
	if m := manifests(t, root); len(m) != 0 {
		t.Errorf("the killed plugin's folder holds manifests %v: a partial snapshot was committed", m)
	}
	if m := manifests(t, localDir); len(m) != 1 {
		t.Errorf("the local sink holds %d manifests, want 1", len(m))
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hasTemp(root string) bool {
	found := false
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), ".folder-tmp-") {
			if info, err := d.Info(); err == nil && info.Size() > 0 {
				found = true
			}
		}
		return nil
	})
	return found
}

func manifests(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == core.ManifestName {
			out = append(out, p)
		}
		return nil
	})
	return out
}
