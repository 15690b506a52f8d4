package blob_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/nightjar-backup/nightjar/sdk/blob"
	"github.com/nightjar-backup/nightjar/sdk/blob/blobtest"
)

// buildExample builds the example plugin (sdk/examples/sink-folder) into a temp folder.
func buildExample(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "examples", "sink-folder")
	bin := filepath.Join(t.TempDir(), "nightjar-sink-folder")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build example plugin: %v\n%s", err, out)
	}
	return bin
}

// startPlugin starts a real plugin process and returns its Client.
func startPlugin(t *testing.T, bin string) (*blob.Client, *plugin.Client) {
	return startPluginB(t, bin)
}

func startPluginB(t testing.TB, bin string) (*blob.Client, *plugin.Client) {
	t.Helper()
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  blob.Handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{blob.ProtocolVersion: {blob.PluginName: &blob.GRPCPlugin{}}},
		Cmd:              exec.Command(bin),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  blob.DialOptions(),
		AutoMTLS:         true,
		SkipHostEnv:      true,
		Logger:           hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}),
	})
	t.Cleanup(pc.Kill)
	rpc, err := pc.Client()
	if err != nil {
		t.Fatalf("start plugin: %v", err)
	}
	raw, err := rpc.Dispense(blob.PluginName)
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	return raw.(*blob.Client), pc
}

func TestConformanceThroughPlugin(t *testing.T) {
	bin := buildExample(t)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		c, _ := startPlugin(t, bin)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Configure(ctx, "test", map[string]any{"root": t.TempDir()}, nil); err != nil {
			t.Fatal(err)
		}
		return c
	})
}

func TestDescribe(t *testing.T) {
	c, _ := startPlugin(t, buildExample(t))
	d, err := c.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "folder" || len(d.ProtocolVersions) != 1 || d.ProtocolVersions[0] != blob.ProtocolVersion {
		t.Fatalf("Describe = %+v", d)
	}
	if len(d.Fields) != 1 || d.Fields[0].Name != "root" || d.Fields[0].Kind != blob.KindPath || !d.Fields[0].Required {
		t.Fatalf("Describe fields = %+v", d.Fields)
	}
}

func TestCallsBeforeConfigureFail(t *testing.T) {
	c, _ := startPlugin(t, buildExample(t))
	err := c.List(context.Background(), "", func(string, int64) error { return nil })
	if err == nil {
		t.Fatal("List before Configure: nil error")
	}
}

// BenchmarkPutThroughPlugin measures Put throughput into the example plugin (gRPC, mTLS,
// sha256 on both sides, fsync); compare with plugins/sink/local's BenchmarkPut.
func BenchmarkPutThroughPlugin(b *testing.B) {
	bin := buildExample(b)
	c, _ := startPluginB(b, bin)
	if err := c.Configure(context.Background(), "bench", map[string]any{"root": b.TempDir()}, nil); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 32<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := c.Put(context.Background(), "bench/obj", bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
