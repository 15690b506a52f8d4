package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/testenv"
)

// s3CLI runs the nightjar CLI in-process and returns its exit code and output.
func s3CLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// s3Setup starts MinIO with a bucket and writes a source tree, an age key, the secret file
// and a config with an S3 sink (first) and a local sink.
func s3Setup(t *testing.T) (m *testenv.MinIO, dir, config, identity string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs MinIO")
	}
	m = testenv.StartMinIO(t)
	c, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""),
		Transport: &http.Transport{Proxy: nil}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(context.Background(), "backups", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	big := make([]byte, 11<<20) // incompressible: a multipart upload with 5MiB parts
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"data/a.txt": []byte("hello\n"), "data/sub/big.bin": big} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	identity = filepath.Join(dir, "key.txt")
	if err := os.WriteFile(identity, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(m.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config = filepath.Join(dir, "nightjar.yaml")
	cfg := fmt.Sprintf(`version: 1
pipeline: substrate
sources:
  - {name: data, type: tree, path: data}
transforms:
  - {type: zstd}
  - {type: age, recipients: [%q]}
sinks:
  - name: spaces
    type: s3
    endpoint: %s
    secure: false
    region: us-east-1
    bucket: backups
    prefix: nightly/
    access_key_id: %s
    secret_access_key_file: secret
    part_size: 5MiB
  - {name: local, type: local, path: local}
`, id.Recipient().String(), m.Endpoint, m.AccessKey)
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return m, dir, config, identity
}

func TestS3SinkThroughTheCLI(t *testing.T) {
	m, dir, config, identity := s3Setup(t)

	code, out, errOut := s3CLI(t, "run", "-c", config, "--json", "-q")
	if code != exitOK {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	var rep struct {
		ID     core.SnapshotID `json:"id"`
		Status string          `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Status != "ok" {
		t.Fatalf("run --json: %v: %s", err, out)
	}

	// Both sinks list the same snapshot.
	var lists [2][]*core.Manifest
	for i, sink := range []string{"spaces", "local"} {
		code, out, errOut = s3CLI(t, "snapshots", "-c", config, "--sink", sink, "--json")
		if code != exitOK {
			t.Fatalf("snapshots --sink %s: exit %d: %s", sink, code, errOut)
		}
		if err := json.Unmarshal([]byte(out), &lists[i]); err != nil {
			t.Fatal(err)
		}
		if len(lists[i]) != 1 || lists[i][0].ID != rep.ID {
			t.Fatalf("snapshots --sink %s: %s, want only %s", sink, out, rep.ID)
		}
	}
	if lists[0][0].Artifacts[0].StoredSHA256 != lists[1][0].Artifacts[0].StoredSHA256 {
		t.Fatal("the S3 and local sinks stored different bytes")
	}

	code, out, errOut = s3CLI(t, "verify", "-c", config, "--snapshot", "all", "--identity", identity)
	if code != exitOK || !strings.Contains(out, "ok") {
		t.Fatalf("verify: exit %d\n%s\n%s", code, out, errOut)
	}

	to := filepath.Join(t.TempDir(), "restored")
	code, out, errOut = s3CLI(t, "restore", "-c", config, "--to", to, "--identity", identity)
	if code != exitOK {
		t.Fatalf("restore: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, name := range []string{"a.txt", "sub/big.bin"} {
		want, _ := os.ReadFile(filepath.Join(dir, "data", name))
		got, err := os.ReadFile(filepath.Join(to, "data", name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("restored %s differs from the source (err %v)", name, err)
		}
	}

	// config show never prints the secret.
	code, out, errOut = s3CLI(t, "config", "show", "-c", config)
	if code != exitOK || strings.Contains(out+errOut, m.SecretKey) || strings.Contains(out+errOut, m.AccessKey) {
		t.Fatalf("config show: exit %d, or it printed a secret:\n%s%s", code, out, errOut)
	}
}

func TestS3SinkWrongSecretFailsCleanly(t *testing.T) {
	m, dir, config, _ := s3Setup(t)
	const wrong = "not-the-secret-9f8e7d6c5b4a"
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := s3CLI(t, "run", "-c", config)
	all := out + errOut
	t.Logf("run with a wrong secret:\n%s", all)
	if code != exitPartial {
		t.Fatalf("run with a wrong secret: exit %d, want %d (local commits, s3 fails)\n%s", code, exitPartial, all)
	}
	if strings.Contains(all, wrong) {
		t.Fatalf("the secret was printed:\n%s", all)
	}
	if !strings.Contains(all, `sink "spaces"`) || !strings.Contains(all, "secret_access_key") {
		t.Fatalf("the error should name the sink and the key to check:\n%s", all)
	}
	// snapshots on the S3 sink fails too, with the same care.
	code, out, errOut = s3CLI(t, "snapshots", "-c", config)
	all = out + errOut
	if code != exitFailed || strings.Contains(all, wrong) || !strings.Contains(all, "secret_access_key") {
		t.Fatalf("snapshots with a wrong secret: exit %d\n%s", code, all)
	}
	// Nothing was committed in S3: with the right secret, the sink has no snapshot.
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(m.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = s3CLI(t, "snapshots", "-c", config, "--json")
	if code != exitOK || strings.TrimSpace(out) != "[]" {
		t.Fatalf("snapshots after the failed run: exit %d: %s%s", code, out, errOut)
	}
}
