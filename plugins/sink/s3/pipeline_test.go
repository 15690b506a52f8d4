package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/config"
	"github.com/nightjar-backup/nightjar/core/engine"
	"github.com/nightjar-backup/nightjar/core/testenv"
	"github.com/nightjar-backup/nightjar/plugins/sink/local"
	"github.com/nightjar-backup/nightjar/plugins/source/tree"
	agetransform "github.com/nightjar-backup/nightjar/plugins/transform/age"
	"github.com/nightjar-backup/nightjar/plugins/transform/zstd"
)

// registry holds the plugins these tests use (plugins/all would import this package).
func registry() *core.Registry {
	r := core.NewRegistry()
	tree.Register(r)
	zstd.Register(r)
	agetransform.Register(r)
	local.Register(r)
	Register(r)
	return r
}

// fixture is a source folder, an age key and a config with a local and an S3 sink.
type fixture struct {
	dir, data, identity, config string
}

func newFixture(t *testing.T, srv *server, endpoint, prefix string) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	f.data = filepath.Join(f.dir, "data")
	files := map[string][]byte{
		"notes.txt":      []byte("nightly backup of substrate\n"),
		"sub/random.bin": randomBytes(t, 2*MinPartSize+4321), // incompressible: a multipart upload
		"sub/empty":      nil,
	}
	for name, b := range files {
		p := filepath.Join(f.data, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	f.identity = filepath.Join(f.dir, "key.txt")
	if err := os.WriteFile(f.identity, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(f.dir, "secret")
	if err := os.WriteFile(secret, []byte(srv.m.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.config = filepath.Join(f.dir, "nightjar.yaml")
	cfg := fmt.Sprintf(`version: 1
pipeline: substrate
sources:
  - {name: data, type: tree, path: data}
transforms:
  - {type: zstd, level: 3}
  - {type: age, recipients: [%q]}
sinks:
  - {name: local, type: local, path: backups}
  - name: spaces
    type: s3
    endpoint: %s
    secure: false
    region: us-east-1
    bucket: %s
    prefix: %s
    access_key_id: %s
    secret_access_key_file: secret
    part_size: 5MiB
`, id.Recipient().String(), endpoint, srv.bucket, prefix, srv.m.AccessKey)
	if err := os.WriteFile(f.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// run builds the pipeline from the config and runs it once.
func (f *fixture) run(t *testing.T) (*engine.Result, error) {
	t.Helper()
	ctx := context.Background()
	reg := registry()
	cfg, err := config.Load(ctx, f.config, reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := engine.Build(ctx, cfg, reg, engine.NewEnv(cfg, slog.New(slog.DiscardHandler), nil), "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	return engine.Run(ctx, b.Pipeline)
}

// sink builds one sink of the config, with the identity for decoding.
func (f *fixture) sink(t *testing.T, name string) (core.Sink, engine.DecoderFunc) {
	t.Helper()
	ctx := context.Background()
	reg := registry()
	cfg, err := config.Load(ctx, f.config, reg)
	if err != nil {
		t.Fatal(err)
	}
	env := engine.NewEnv(cfg, slog.New(slog.DiscardHandler), []string{f.identity})
	b, err := engine.Build(ctx, cfg, reg, env, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.Pipeline.Sinks[0].Sink, engine.RegistryDecoders(reg, env)
}

// verifyAll reads every artifact of every complete snapshot to its end, checking stored and
// raw sizes and hashes against the manifest; it returns the snapshot ids.
func verifyAll(t *testing.T, sink core.Sink, dec engine.DecoderFunc) []core.SnapshotID {
	t.Helper()
	ctx := context.Background()
	ms, err := sink.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []core.SnapshotID
	for _, m := range ms {
		ids = append(ids, m.ID)
		for i := range m.Artifacts {
			rc, err := engine.OpenRaw(ctx, sink, m, &m.Artifacts[i], dec)
			if err != nil {
				t.Fatalf("snapshot %s: open %s: %v", m.ID, m.Artifacts[i].Name, err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatalf("snapshot %s: a committed manifest points at a bad object: %v", m.ID, err)
			}
			rc.Close()
		}
	}
	return ids
}

func TestPipelineCommitsTheSameSnapshotToS3AndLocal(t *testing.T) {
	srv := startServer(t)
	f := newFixture(t, srv, srv.m.Endpoint, "nightly/")
	res, err := f.run(t)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Committed() != 2 {
		t.Fatalf("%d sinks committed, want 2", res.Committed())
	}
	localSink, dec := f.sink(t, "local")
	s3Sink, _ := f.sink(t, "spaces")
	ctx := context.Background()
	lm, err := localSink.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := s3Sink.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(lm) != 1 || len(sm) != 1 {
		t.Fatalf("local has %d snapshots, s3 %d; want 1 each", len(lm), len(sm))
	}
	lj, _ := lm[0].Encode()
	sj, _ := sm[0].Encode()
	if !bytes.Equal(lj, sj) || sm[0].ID != res.ID {
		t.Fatalf("the sinks hold different manifests:\nlocal: %s\ns3:    %s", lj, sj)
	}
	verifyAll(t, s3Sink, dec)

	// A third-party S3 client lists the objects under <prefix><pipeline>/<id>/ and stock
	// tools decode the artifact.
	want := map[string]bool{
		"nightly/substrate/" + string(res.ID) + "/manifest.json":    true,
		"nightly/substrate/" + string(res.ID) + "/data.tar.zst.age": true,
	}
	keys := srv.rawKeys(t)
	if len(keys) != len(want) {
		t.Fatalf("bucket holds %v, want %v", keys, want)
	}
	for k := range want {
		if _, ok := keys[k]; !ok {
			t.Fatalf("bucket has no %s (it holds %v)", k, keys)
		}
	}
	art := sm[0].Artifacts[0]
	if keys["nightly/substrate/"+string(res.ID)+"/"+art.Object] != art.StoredSize {
		t.Fatalf("object size %d, manifest says %d", keys["nightly/substrate/"+string(res.ID)+"/"+art.Object], art.StoredSize)
	}
	obj, err := srv.client.GetObject(ctx, srv.bucket, "nightly/substrate/"+string(res.ID)+"/data.tar.zst.age", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	out := filepath.Join(t.TempDir(), "stock")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	ageBin, zstdBin, tarBin := testenv.Tool(t, "age"), testenv.Tool(t, "zstd"), testenv.Tool(t, "tar")
	cmd := exec.Command("sh", "-c", `"$1" -d -i "$2" | "$3" -d | "$4" -x -C "$5"`, "sh", ageBin, f.identity, zstdBin, tarBin, out)
	cmd.Env = testenv.Env(t)
	cmd.Stdin = obj
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("age -d | zstd -d | tar -x: %v\n%s", err, b)
	}
	sameTree(t, f.data, findRoot(t, out))
}

// findRoot returns where the tar's files landed (the tar may hold a top folder).
func findRoot(t *testing.T, dir string) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err == nil {
		return dir
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || !entries[0].IsDir() {
		t.Fatalf("unexpected extracted layout in %s: %v", dir, entries)
	}
	return filepath.Join(dir, entries[0].Name())
}

// sameTree compares two folders' regular files, contents and permission bits.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		a, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil {
			return fmt.Errorf("restored tree: %w", err)
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("%s differs after restore", rel)
		}
		ia, _ := d.Info()
		ib, err := os.Stat(filepath.Join(got, rel))
		if err != nil {
			return err
		}
		if ia.Mode().Perm() != ib.Mode().Perm() {
			return fmt.Errorf("%s: mode %v, want %v", rel, ib.Mode().Perm(), ia.Mode().Perm())
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("compared no files")
	}
}

// Connections cut in the middle of uploads never leave a committed snapshot with a bad
// object: each run either commits through retries (and verifies) or commits nothing in S3.
func TestCutConnectionsNeverCommitABadSnapshot(t *testing.T) {
	srv := startServer(t)
	for i, tc := range []struct {
		name       string
		cutAfter   func(n int) int64
		wantCommit bool
	}{
		{"transient resets", func(n int) int64 {
			if n%3 == 0 { // every third connection dies in the middle of a part
				return 1<<20 + int64(n)*7919
			}
			return -1
		}, true},
		{"persistent resets", func(n int) int64 { return 1<<20 + int64(n)*7919 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := startResetProxy(t, srv.m.Endpoint, tc.cutAfter)
			f := newFixture(t, srv, proxy.Addr(), fmt.Sprintf("cut-%d/", i))
			before := len(srv.rawKeys(t))
			res, err := f.run(t)
			if proxy.resets.Load() == 0 {
				t.Fatal("the proxy reset no connection: the test tested nothing")
			}
			var s3res engine.SinkResult
			for _, r := range res.Sinks {
				if r.Name == "spaces" {
					s3res = r
				}
			}
			t.Logf("run: err=%v, s3 committed=%v, %d connections, %d reset", err, s3res.Committed, proxy.conns.Load(), proxy.resets.Load())
			if s3res.Committed != tc.wantCommit {
				t.Fatalf("s3 committed = %v, want %v (err %v)", s3res.Committed, tc.wantCommit, s3res.Err)
			}
			if !tc.wantCommit {
				if err == nil || !strings.Contains(err.Error(), "partial") {
					t.Fatalf("run error %v, want a partial failure (local commits, s3 fails)", err)
				}
				if !strings.Contains(s3res.Err.Error(), `s3 sink "spaces"`) {
					t.Errorf("the s3 error does not name the sink: %v", s3res.Err)
				}
				// Nothing of the failed snapshot stays: no object, no manifest, no parts.
				if after := srv.rawKeys(t); len(after) != before {
					t.Errorf("the failed run left objects: %v", after)
				}
			}
			if u := srv.incomplete(t); len(u) != 0 {
				t.Fatalf("incomplete multipart uploads left: %v", u)
			}
			// Whatever happened, every committed snapshot verifies (read directly from MinIO).
			direct := *f
			direct.config = filepath.Join(f.dir, "direct.yaml")
			b, _ := os.ReadFile(f.config)
			b = bytes.ReplaceAll(b, []byte(proxy.Addr()), []byte(srv.m.Endpoint))
			if err := os.WriteFile(direct.config, b, 0o600); err != nil {
				t.Fatal(err)
			}
			sink, dec := direct.sink(t, "spaces")
			ids := verifyAll(t, sink, dec)
			has := false
			for _, id := range ids {
				has = has || id == res.ID
			}
			if has != tc.wantCommit {
				t.Fatalf("snapshot %s listed in s3: %v, want %v", res.ID, has, tc.wantCommit)
			}
		})
	}
}
