package blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nightjar-backup/nightjar/sdk/blob"
	"github.com/nightjar-backup/nightjar/sdk/blob/blobpb"
	"github.com/nightjar-backup/nightjar/sdk/blob/blobtest"
)

// buildExample builds the example plugin (sdk/examples/sink-folder) into a temp folder.
func buildExample(t testing.TB) string {
	t.Helper()
	return buildPlugin(t, filepath.Join("..", "examples", "sink-folder"))
}

// buildPlugin builds the plugin in dir (relative to this package) into a temp folder.
func buildPlugin(t testing.TB, dir string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), dir)
	bin := filepath.Join(t.TempDir(), "nightjar-sink-"+filepath.Base(dir))
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build example plugin: %v\n%s", err, out)
	}
	return bin
}

// startPlugin starts a real plugin process with a data ring, as nightjar does, and returns
// its Client.
func startPlugin(t *testing.T, bin string) (*blob.Client, *plugin.Client) {
	c, pc, _ := startPluginB(t, bin, true)
	return c, pc
}

// startPluginB starts a real plugin process, with a data ring if withRing.
func startPluginB(t testing.TB, bin string, withRing bool) (*blob.Client, *plugin.Client, *blob.Ring) {
	t.Helper()
	c, pc, ring, err := startWith(t, bin, withRing, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, pc, ring
}

// startWith starts a real plugin process with the client config nightjar uses (mutual
// TLS from AttachTLS, a data ring if withRing), changed by tweak if it is not nil.
func startWith(t testing.TB, bin string, withRing bool, tweak func(*plugin.ClientConfig)) (*blob.Client, *plugin.Client, *blob.Ring, error) {
	t.Helper()
	cmd := exec.Command(bin)
	var ring *blob.Ring
	if withRing {
		var err error
		if ring, err = blob.AttachRing(cmd); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ring.Close() })
	}
	tlsCfg, tlsPipe, err := blob.AttachTLS(cmd)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  blob.Handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{blob.ProtocolVersion: {blob.PluginName: &blob.GRPCPlugin{Ring: ring}}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  blob.DialOptions(),
		TLSConfig:        tlsCfg,
		SkipHostEnv:      true,
		Logger:           hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}),
	}
	if tweak != nil {
		tweak(cfg)
	}
	pc := plugin.NewClient(cfg)
	t.Cleanup(pc.Kill)
	rpc, err := pc.Client()
	ring.Started()
	tlsPipe.Close()
	if err != nil {
		return nil, pc, ring, fmt.Errorf("start plugin: %w", err)
	}
	raw, err := rpc.Dispense(blob.PluginName)
	if err != nil {
		return nil, pc, ring, fmt.Errorf("dispense: %w", err)
	}
	return raw.(*blob.Client), pc, ring, nil
}

func TestConformanceThroughPlugin(t *testing.T) {
	bin := buildExample(t)
	for _, tc := range []struct {
		name   string
		ring   bool // the data on the ring, as nightjar sends it
		sha256 bool // trailers as a host built before CRC32C trailers sends them
	}{
		{name: "ring", ring: true},
		{name: "crc32c"},
		{name: "sha256", sha256: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blobtest.Run(t, func(t *testing.T) blob.Store {
				c, _, _ := startPluginB(t, bin, tc.ring)
				if tc.sha256 {
					c.UseSHA256()
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := c.Configure(ctx, "test", map[string]any{"root": t.TempDir()}, nil); err != nil {
					t.Fatal(err)
				}
				return c
			})
		})
	}
}

// TestBadTrailerStoresNothing sends Puts whose trailer does not match the data, as a
// stream mangled on the way would, and checks that the plugin refuses them and lists
// nothing.
func TestBadTrailerStoresNothing(t *testing.T) {
	bin := buildExample(t)
	data := []byte("the data that was sent")
	good := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
	goodSHA := sha256.Sum256(data)
	for _, tc := range []struct {
		name    string
		header  *blobpb.PutHeader
		trailer *blobpb.PutTrailer
	}{
		{"crc32c wrong", &blobpb.PutHeader{Checksum: blobpb.Checksum_CHECKSUM_CRC32C},
			&blobpb.PutTrailer{Size: int64(len(data)), Crc32C: good ^ 1}},
		{"crc32c missing, sha256 given", &blobpb.PutHeader{Checksum: blobpb.Checksum_CHECKSUM_CRC32C},
			&blobpb.PutTrailer{Size: int64(len(data)), Sha256: goodSHA[:]}},
		{"sha256 wrong", &blobpb.PutHeader{},
			&blobpb.PutTrailer{Size: int64(len(data)), Sha256: make([]byte, 32)}},
		{"sha256 missing, crc32c given", &blobpb.PutHeader{},
			&blobpb.PutTrailer{Size: int64(len(data)), Crc32C: good}},
		{"size short", &blobpb.PutHeader{Checksum: blobpb.Checksum_CHECKSUM_CRC32C},
			&blobpb.PutTrailer{Size: int64(len(data)) - 1, Crc32C: good}},
		{"unknown checksum", &blobpb.PutHeader{Checksum: 7},
			&blobpb.PutTrailer{Size: int64(len(data)), Crc32C: good}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, pc := startPlugin(t, bin)
			ctx := context.Background()
			if err := c.Configure(ctx, "test", map[string]any{"root": t.TempDir()}, nil); err != nil {
				t.Fatal(err)
			}
			rpc, err := pc.Client()
			if err != nil {
				t.Fatal(err)
			}
			raw := blobpb.NewStoreClient(rpc.(*plugin.GRPCClient).Conn)
			stream, err := raw.Put(ctx)
			if err != nil {
				t.Fatal(err)
			}
			tc.header.Key = "p/obj"
			for _, m := range []*blobpb.PutRequest{
				{Msg: &blobpb.PutRequest_Header{Header: tc.header}},
				{Msg: &blobpb.PutRequest_Chunk{Chunk: data}},
				{Msg: &blobpb.PutRequest_Trailer{Trailer: tc.trailer}},
			} {
				if err := stream.Send(m); err != nil {
					break // the plugin ended the call; CloseAndRecv has its status
				}
			}
			if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Put with a bad trailer: %v, want InvalidArgument", err)
			}
			var keys []string
			if err := c.List(ctx, "", func(k string, _ int64) error { keys = append(keys, k); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(keys) != 0 {
				t.Fatalf("after a refused Put the plugin lists %v", keys)
			}
		})
	}
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

// BenchmarkPutThroughPlugin measures Put throughput into the example plugin (CRC32C on both
// sides, fsync), with the data on the ring and in gRPC chunk messages (mTLS); compare with
// plugins/sink/local's BenchmarkPut.
func BenchmarkPutThroughPlugin(b *testing.B) {
	bin := buildExample(b)
	for _, tc := range []struct {
		name string
		ring bool
	}{{"ring", true}, {"chunks", false}} {
		b.Run(tc.name, func(b *testing.B) {
			c, _, _ := startPluginB(b, bin, tc.ring)
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
		})
	}
}

// errSource fails after handing out n bytes.
type errSource struct {
	n   int
	err error
}

func (e *errSource) Read(p []byte) (int, error) {
	if e.n == 0 {
		return 0, e.err
	}
	k := min(len(p), e.n)
	clear(p[:k])
	e.n -= k
	return k, nil
}

// TestRing checks that Puts travel through the data ring, and that a Put that fails on
// either side leaves the ring usable for the next: nightjar's source failing mid-object (an
// abort message), the plugin's store failing before it read anything (the plugin answers
// early and drains the messages, releasing their slots).
func TestRing(t *testing.T) {
	c, _, ring := startPluginB(t, buildExample(t), true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Configure(ctx, "test", map[string]any{"root": t.TempDir()}, nil); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	putGet := func(key string, size int) {
		t.Helper()
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rnd.Uint32())
		}
		before := ring.Seq()
		if n, err := c.Put(ctx, key, bytes.NewReader(data)); err != nil || n != int64(size) {
			t.Fatalf("Put %s (%d bytes) = %d, %v", key, size, n, err)
		}
		if ring.Seq() != before+1 {
			t.Fatalf("Put %s did not use the ring (Put number %d -> %d)", key, before, ring.Seq())
		}
		rc, err := c.Get(ctx, key, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get %s: %d bytes, %v; want the %d bytes put", key, len(got), err, size)
		}
	}
	for _, size := range []int{0, 1, blob.ChunkSize - 1, blob.ChunkSize, 3*blob.ChunkSize + 5} {
		putGet(fmt.Sprintf("p/size-%d", size), size)
	}

	sourceErr := errors.New("source went away")
	if _, err := c.Put(ctx, "p/aborted", &errSource{n: 2*blob.ChunkSize + 7, err: sourceErr}); !errors.Is(err, sourceErr) {
		t.Fatalf("Put from a failing source: %v, want %v", err, sourceErr)
	}
	putGet("p/after-abort", 2*blob.ChunkSize)

	// The folder store cannot create p/file/obj while p/file is a file: it fails before it
	// reads any data, with 8 MiB, twice the ring, still to come.
	putGet("p/file", 10)
	_, err := c.Put(ctx, "p/file/obj", bytes.NewReader(make([]byte, 8*blob.ChunkSize)))
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Put below a file: %v, want the store's error", err)
	}
	putGet("p/after-store-error", blob.ChunkSize+1)

	if ring.Broken() {
		t.Fatal("the ring broke")
	}
	var keys []string
	if err := c.List(ctx, "p/", func(k string, _ int64) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(k, "aborted") || strings.HasPrefix(k, "p/file/") {
			t.Fatalf("a failed Put left %s", k)
		}
	}
}
