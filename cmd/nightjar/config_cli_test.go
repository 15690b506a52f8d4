package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigErrorsExitTwo(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		yaml string
		want []string // substrings of stderr
	}{
		{
			name: "misspelled key names it and suggests the right one",
			yaml: "version: 1\npipeline: p\nsources:\n  - {name: d, type: tree, pth: /tmp}\nsinks:\n  - {name: l, type: local, path: /tmp/x}\n",
			want: []string{"bad.yaml:4: sources[0].pth: unknown key \"pth\" (did you mean \"path\"?)", "sources[0].path: required key \"path\" is missing"},
		},
		{
			name: "missing required top-level keys",
			yaml: "sources:\n  - {name: d, type: tree, path: /tmp}\nsinks:\n  - {name: l, type: local, path: /tmp/x}\n",
			want: []string{"version: required key \"version\" is missing", "pipeline: required key \"pipeline\" is missing"},
		},
		{
			name: "wrong types",
			yaml: "version: 1\npipeline: p\nsources:\n  - {name: d, type: tree, path: /tmp, exclude: {a: b}}\ntransforms:\n  - {type: zstd, level: fast}\nsinks:\n  - {name: l, type: local, path: [a, b]}\n",
			want: []string{"bad.yaml:4: sources[0].exclude: expected a list of strings, got a mapping", "bad.yaml:6: transforms[0].level: expected an integer, got the string \"fast\"", "bad.yaml:8: sinks[0].path: expected a path, got a list"},
		},
		{
			name: "unset variable",
			yaml: "version: 1\npipeline: p\nsources:\n  - {name: d, type: tree, path: \"${NIGHTJAR_TEST_UNSET_VAR}\"}\nsinks:\n  - {name: l, type: local, path: /tmp/x}\n",
			want: []string{"bad.yaml:4: sources[0].path: environment variable NIGHTJAR_TEST_UNSET_VAR is not set"},
		},
		{
			name: "every problem at once, in line order",
			yaml: "version: 2\npipeline: 'bad name'\nsources:\n  - {name: d, type: tre, path: /tmp}\nsinks:\n  - {name: l, type: local, path: /tmp/x, retention: {polcy: gfs}}\n",
			want: []string{"invalid config (5 problems)", "bad.yaml:1: version: expected a value from 1 to 1, got 2",
				"bad.yaml:2: pipeline: invalid name", "bad.yaml:4: sources[0].type: unknown source type \"tre\"",
				"sinks[0].retention.polcy: unknown key \"polcy\" (did you mean \"policy\"?)", "sinks[0].retention.policy: required key"},
		},
		{
			name: "unknown transform and duplicate names",
			yaml: "version: 1\npipeline: p\nsources:\n  - {name: d, type: tree, path: /tmp}\n  - {name: d, type: tree, path: /tmp}\ntransforms:\n  - {type: gzip}\nsinks:\n  - {name: l, type: local, path: /tmp/x}\n",
			want: []string{"bad.yaml:5: sources[1].name: name \"d\" is already used by sources[0]", "bad.yaml:7: transforms[0].type: unknown transform type \"gzip\" (known: age, zstd)"},
		},
		{
			name: "not YAML",
			yaml: "version: 1\n  pipeline: [\n",
			want: []string{"bad.yaml:2: invalid YAML: mapping values are not allowed"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "bad.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range [][]string{{"config", "validate", "-c", p}, {"run", "-c", p}, {"snapshots", "-c", p}} {
				r := nj(t, cmd...)
				if r.code != exitUsage {
					t.Fatalf("%v: want exit 2, got %v", cmd, r)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("%v: stderr lacks %q:\n%s", cmd, w, r.stderr)
					}
				}
			}
		})
	}
}

func TestConfigUsageErrors(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run"}, "no config file"},
		{[]string{"run", "-c", filepath.Join(t.TempDir(), "missing.yaml")}, "cannot read config"},
		{[]string{"snapshots", "-c", f.config, "--sink", "nope"}, `no sink named "nope"`},
		{[]string{"restore", "-c", f.config}, "--to DIR is required"},
		{[]string{"run", "-c", f.config, "--bogus"}, "unknown flag"},
	} {
		r := nj(t, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: want exit 2 and %q, got %v", tc.args, tc.want, r)
		}
	}
}

func TestConfigShowRedactsSecrets(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	const fileSecret = "https://hc.example/ping/0f1e2d3c-file-secret"
	const envSecret = "https://hc.example/ping/9a8b7c6d-env-secret"
	secretFile := filepath.Join(f.dir, "hc-url")
	if err := os.WriteFile(secretFile, []byte(fileSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, notify, secret string }{
		{"from a _file", "notify: {healthchecks_url_file: " + secretFile + "}\n", fileSecret},
		{"from ${VAR}", "notify: {healthchecks_url: \"${NIGHTJAR_TEST_HC}\"}\n", envSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NIGHTJAR_TEST_HC", envSecret)
			p := filepath.Join(f.dir, "secret.yaml")
			if err := os.WriteFile(p, append(append([]byte{}, base...), tc.notify...), 0o644); err != nil {
				t.Fatal(err)
			}
			r := nj(t, "config", "show", "-c", p)
			if r.code != 0 {
				t.Fatalf("config show: %v", r)
			}
			if strings.Contains(r.stdout+r.stderr, "file-secret") || strings.Contains(r.stdout+r.stderr, "env-secret") {
				t.Fatalf("config show printed a secret:\n%s", r.stdout)
			}
			if !strings.Contains(r.stdout, "healthchecks_url: '***'") {
				t.Errorf("config show does not show the redacted key:\n%s", r.stdout)
			}
			if !strings.Contains(r.stdout, f.recipient) || !strings.Contains(r.stdout, "level: 3") {
				t.Errorf("config show lacks ordinary values:\n%s", r.stdout)
			}
		})
	}
}
