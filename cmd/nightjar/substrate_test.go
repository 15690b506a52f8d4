package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/nightjar-backup/nightjar/core/config"
	"github.com/nightjar-backup/nightjar/core/testenv"
	"github.com/nightjar-backup/nightjar/plugins/all"
)

// configs/substrate.yaml is valid with the full plugin registry once its variables are set
// and its files exist (/etc/nightjar/ is redirected to a temp folder holding them), and it
// is the pipeline the first user needs: SQLite and files, restic and s3 sinks each with
// retention, notify and metrics.
//
// It needs the sqlite, s3 and restic plugins, which land from other branches.
func TestSubstrateConfigValidates(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "configs", "substrate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	etc := t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"substrate.recipients": id.Recipient().String() + "\n",
		"restic-password":      "correct horse battery staple\n",
		"spaces-secret":        "spaces-secret-value\n",
	} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "substrate.yaml")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(string(src), "/etc/nightjar/", etc+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SPACES_KEY", "DO00EXAMPLEKEY")
	t.Setenv("SPACES_SECRET", "spaces-secret-value")
	t.Setenv("HC_URL", "https://hc-ping.example/0f2c")

	cfg, err := config.Load(context.Background(), file, all.Registry())
	if err != nil {
		t.Fatalf("configs/substrate.yaml does not validate:\n%v", err)
	}
	if cfg.Pipeline != "substrate" {
		t.Fatalf("pipeline %q", cfg.Pipeline)
	}
	sources := map[string]string{}
	for _, s := range cfg.Sources {
		sources[s.Type] = s.String("path")
	}
	if sources["sqlite"] != "/data/josh.db" || sources["tree"] != "/data" {
		t.Fatalf("sources: %v", sources)
	}
	for _, s := range cfg.Sources {
		if s.Type == "tree" && !strings.Contains(strings.Join(s.Strings("exclude"), " "), "josh.db-*") {
			t.Fatalf("the tree source stores the live database's -wal/-shm: %v", s.Strings("exclude"))
		}
	}
	sinks := map[string]*config.Sink{}
	for _, s := range cfg.Sinks {
		sinks[s.Type] = s
	}
	for _, typ := range []string{"restic", "s3"} {
		s := sinks[typ]
		if s == nil || s.Retention == nil || s.Retention.Policy() == "" {
			t.Fatalf("no %s sink with retention", typ)
		}
	}
	if d, _ := sinks["restic"].Retention.Params()["keep_daily"].(int); d < 30 {
		if d64, _ := sinks["restic"].Retention.Params()["keep_daily"].(int64); d64 < 30 {
			t.Fatalf("restic keeps fewer than 30 dailies: %v", sinks["restic"].Retention.Params())
		}
	}
	if !strings.HasPrefix(sinks["restic"].String("repository"), "s3:https://nyc3.digitaloceanspaces.com/") {
		t.Fatalf("restic repository %q", sinks["restic"].String("repository"))
	}
	if cfg.Notify.String("healthchecks_url") != "https://hc-ping.example/0f2c" || cfg.Metrics.String("textfile") == "" {
		t.Fatal("notify and metrics must be set")
	}
	// Secrets never show.
	shown := cfg.Redacted()
	for _, secret := range []string{"DO00EXAMPLEKEY", "spaces-secret-value", "hc-ping.example/0f2c"} {
		if strings.Contains(strings.ReplaceAll(fmtAny(shown), " ", ""), secret) {
			t.Fatalf("config show would reveal %q", secret)
		}
	}
}

func fmtAny(v any) string {
	var b strings.Builder
	_ = writeJSON(&b, v)
	return b.String()
}
