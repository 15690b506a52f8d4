package age

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/nightjar-backup/nightjar/core/testenv"
)

func keyFile(t testing.TB) (string, *age.X25519Identity) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(p, []byte("# test key\n"+id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, id
}

func TestRoundTripAndStockAge(t *testing.T) {
	key, id := keyFile(t)
	_, other := keyFile(t)
	data := make([]byte, 5<<20+3)
	rand.Read(data)
	var enc bytes.Buffer
	w, err := New(id.Recipient(), other.Recipient()).Encode(&enc)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewDecoder(key).Decode(bytes.NewReader(enc.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("round trip: %v", err)
	}
	cmd := exec.Command(testenv.Tool(t, "age"), "-d", "-i", key)
	cmd.Env = testenv.Env(t)
	cmd.Stdin = bytes.NewReader(enc.Bytes())
	out, err := cmd.Output()
	if err != nil || !bytes.Equal(out, data) {
		t.Fatalf("stock age -d: %v", err)
	}
	if d := New(id.Recipient(), other.Recipient()).Descriptor(); d["type"] != "age" || d["recipients"] != "2" || strings.Contains(d["recipients"], "age1") {
		t.Errorf("descriptor %v", d)
	}
}

func TestDecodeErrors(t *testing.T) {
	key, id := keyFile(t)
	wrongKey, _ := keyFile(t)
	var enc bytes.Buffer
	w, _ := New(id.Recipient()).Encode(&enc)
	w.Write([]byte("secret"))
	w.Close()
	if _, err := NewDecoder().Decode(bytes.NewReader(enc.Bytes())); err != ErrNoIdentity {
		t.Errorf("no identity: %v", err)
	}
	if _, err := NewDecoder(wrongKey).Decode(bytes.NewReader(enc.Bytes())); err == nil || !strings.Contains(err.Error(), "did not match any of the recipients") {
		t.Errorf("wrong identity: %v", err)
	}
	if _, err := NewDecoder(filepath.Join(t.TempDir(), "missing")).Decode(bytes.NewReader(enc.Bytes())); err == nil {
		t.Error("missing identity file accepted")
	}
	b := bytes.Clone(enc.Bytes())
	b[len(b)-5] ^= 1
	r, err := NewDecoder(key).Decode(bytes.NewReader(b))
	if err == nil {
		_, err = io.ReadAll(r)
	}
	if err == nil {
		t.Error("a flipped byte decrypted without error")
	}
}

func BenchmarkEncode(b *testing.B) {
	_, id := keyFile(b)
	data := make([]byte, 32<<20)
	rand.Read(data)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		w, _ := New(id.Recipient()).Encode(io.Discard)
		for i := 0; i < len(data); i += 1 << 20 {
			w.Write(data[i : i+1<<20])
		}
		w.Close()
	}
}

func BenchmarkDecode(b *testing.B) {
	key, id := keyFile(b)
	data := make([]byte, 32<<20)
	rand.Read(data)
	var enc bytes.Buffer
	w, _ := New(id.Recipient()).Encode(&enc)
	w.Write(data)
	w.Close()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r, _ := NewDecoder(key).Decode(bytes.NewReader(enc.Bytes()))
		io.Copy(io.Discard, r)
	}
}
