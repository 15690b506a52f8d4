package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/nightjar-backup/nightjar/core/testenv"
)

func TestKeygenWritesPrivateIdentityAndPrintsRecipient(t *testing.T) {
	dir := t.TempDir()
	key, rcpt := filepath.Join(dir, "key.txt"), filepath.Join(dir, "recipient.txt")
	code, stdout, stderr := runCLI(t, "keygen", "-o", key, "--recipient-out", rcpt)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	st, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("identity mode %v, want 0600", st.Mode().Perm())
	}
	printed := strings.TrimSpace(stdout)
	r, err := age.ParseX25519Recipient(printed)
	if err != nil {
		t.Fatalf("printed recipient %q does not parse: %v", printed, err)
	}
	if b, _ := os.ReadFile(rcpt); strings.TrimSpace(string(b)) != r.String() {
		t.Fatalf("--recipient-out holds %q, printed %q", b, printed)
	}
	body, _ := os.ReadFile(key)
	ids, err := age.ParseIdentities(bytes.NewReader(body))
	if err != nil || len(ids) != 1 {
		t.Fatalf("identity file does not parse: %v", err)
	}
	if ids[0].(*age.X25519Identity).Recipient().String() != printed {
		t.Fatal("printed recipient does not match the identity")
	}
}

func TestKeygenRefusesToOverwrite(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(key, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "keygen", "-o", key)
	if code == exitOK || !strings.Contains(stderr, "already exists; refusing to overwrite") || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if b, _ := os.ReadFile(key); string(b) != "precious\n" {
		t.Fatalf("existing key changed: %q", b)
	}
	if code, _, _ := runCLI(t, "keygen"); code != exitUsage {
		t.Fatalf("keygen without -o: exit %d, want %d", code, exitUsage)
	}
}

// The stock age binary encrypts to the printed recipient and decrypts with the identity file.
func TestKeygenRoundTripsWithStockAge(t *testing.T) {
	ageBin := testenv.Tool(t, "age")
	dir := t.TempDir()
	key := filepath.Join(dir, "key.txt")
	code, stdout, stderr := runCLI(t, "keygen", "-o", key)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	plain := filepath.Join(dir, "plain.txt")
	if err := os.WriteFile(plain, []byte("the night is dark\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	enc := testenv.Command(t, "age", "-r", strings.TrimSpace(stdout), "-o", filepath.Join(dir, "c.age"), plain)
	if out, err := enc.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", ageBin, err, out)
	}
	dec := testenv.Command(t, "age", "-d", "-i", key, filepath.Join(dir, "c.age"))
	out, err := dec.Output()
	if err != nil || string(out) != "the night is dark\n" {
		t.Fatalf("age -d: %v: %q", err, out)
	}
}
