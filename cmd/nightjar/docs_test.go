package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nightjar-backup/nightjar/core/config"
	"github.com/nightjar-backup/nightjar/core/testenv"
	"github.com/nightjar-backup/nightjar/plugins/all"
)

var update = flag.Bool("update", false, "rewrite docs/CONFIG.md from the code's schemas")

// docs/CONFIG.md is generated from the Field declarations; this fails when someone changes
// a field without regenerating it (go test ./cmd/nightjar -run TestConfigDocs -update).
func TestConfigDocsInSync(t *testing.T) {
	var b bytes.Buffer
	if err := writeConfigDocs(&b, all.Registry()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(testenv.RepoRoot(), "docs", "CONFIG.md")
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, b.Bytes()) {
		t.Fatalf("docs/CONFIG.md is out of date: run `go run ./cmd/nightjar docs config > docs/CONFIG.md` (or this test with -update)")
	}
	// The command prints the same text.
	code, stdout, _ := runCLI(t, "docs", "config")
	if code != 0 || stdout != b.String() {
		t.Fatalf("docs config: exit %d, differs from the generator", code)
	}
}

// Every key of every schema is documented, with its default.
func TestConfigDocsCoverEveryKey(t *testing.T) {
	var b bytes.Buffer
	reg := all.Registry()
	if err := writeConfigDocs(&b, reg); err != nil {
		t.Fatal(err)
	}
	doc := b.String()
	check := func(where, name string) {
		if !strings.Contains(doc, "| `"+name+"`") {
			t.Errorf("%s key %q is not documented", where, name)
		}
	}
	for _, f := range config.RootFields() {
		check("top-level", f.Name)
	}
	for sec, fields := range config.SectionFields() {
		for _, f := range fields {
			check(sec, f.Name)
		}
	}
	for _, typ := range reg.SinkTypes() {
		if !strings.Contains(doc, "### sink `"+typ+"`") {
			t.Errorf("sink %s has no section", typ)
		}
	}
	if !strings.Contains(doc, "| `timeout` | duration | `10s` |") {
		t.Errorf("notify.timeout's default is not shown")
	}
}
