package s3

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/config"
	"github.com/nightjar-backup/nightjar/core/engine"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"16MiB", 16 << 20, false},
		{"5 MiB", 5 << 20, false},
		{"1GiB", 1 << 30, false},
		{"64MB", 64e6, false},
		{"1048576", 1 << 20, false},
		{"1.5GiB", 3 << 29, false},
		{"lots", 0, true},
		{"16XB", 0, true},
		{"", 0, true},
		{"-5MiB", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// buildSink validates a config with one s3 sink and builds it.
func buildSink(t *testing.T, sinkYAML string, env map[string]string) (*config.Config, error) {
	t.Helper()
	doc := "version: 1\npipeline: p\nsources:\n  - {name: data, type: tree, path: /tmp}\nsinks:\n  - name: spaces\n    type: s3\n" + sinkYAML
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	ctx := context.Background()
	reg := registry()
	cfg, err := config.Parse(ctx, "/etc/nightjar/p.yaml", []byte(doc), reg, lookup)
	if err != nil {
		return nil, err
	}
	b, err := engine.Build(ctx, cfg, reg, engine.NewEnv(cfg, slog.New(slog.DiscardHandler), nil), "spaces")
	if err != nil {
		return cfg, err
	}
	b.Close()
	return cfg, nil
}

func TestConfig(t *testing.T) {
	const base = "    endpoint: nyc3.digitaloceanspaces.com\n    bucket: b\n    access_key_id: ${KEY}\n    secret_access_key: ${SECRET}\n"
	env := map[string]string{"KEY": "AKIAEXAMPLEKEY", "SECRET": "very-secret-value"}
	for _, tc := range []struct {
		name, yaml string
		want       string // "" for success
	}{
		{"valid", base, ""},
		{"valid with options", base + "    secure: false\n    region: us-east-1\n    prefix: nightly/\n    storage_class: STANDARD_IA\n    part_size: 64MiB\n", ""},
		{"part size too small", base + "    part_size: 1MiB\n", "part_size: expected 5MiB to 5GiB"},
		{"part size not a size", base + "    part_size: lots\n", "part_size: expected a size"},
		{"endpoint with scheme", strings.Replace(base, "nyc3.digitaloceanspaces.com", "https://nyc3.digitaloceanspaces.com", 1), "endpoint: expected host[:port]"},
		{"missing secret", strings.Replace(base, "    secret_access_key: ${SECRET}\n", "", 1), "secret_access_key_file"},
		{"missing bucket", strings.Replace(base, "    bucket: b\n", "", 1), `required key "bucket"`},
		{"typo", base + "    part_sise: 16MiB\n", `did you mean "part_size"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := buildSink(t, tc.yaml, env)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				// Both keys are secrets: never shown.
				red := cfg.Sinks[0].Component.Redacted()
				if red["access_key_id"] != "***" || red["secret_access_key"] != "***" {
					t.Fatalf("secrets not redacted: %v", red)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !core.IsConfigError(err) {
				t.Errorf("error %v is not a config error (exit 2)", err)
			}
			if strings.Contains(err.Error(), env["SECRET"]) {
				t.Errorf("error contains the secret: %v", err)
			}
		})
	}
}
