package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core/retention"
	"github.com/nightjar-backup/nightjar/core/testenv"
	"github.com/nightjar-backup/nightjar/sdk/policy/policytest"
)

// TestExamplePolicy builds sdk/examples/policy-keep-weekdays to wasip1 and runs it the way a
// policy author would: `nightjar policy test keep-weekdays.wasm --snapshots ...`.
func TestExamplePolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a WebAssembly module")
	}
	dir := t.TempDir()
	wasm := filepath.Join(dir, "keep-weekdays.wasm")
	if err := policytest.Build(context.Background(), filepath.Join(testenv.RepoRoot(), "sdk", "examples", "policy-keep-weekdays"), ".", wasm); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC) // a Sunday
	var snaps []retention.Snapshot
	for i := 0; i < 30; i++ {
		ts := now.AddDate(0, 0, -i).Add(-time.Hour)
		snaps = append(snaps, retention.Snapshot{ID: ts.Format("20060102T150405Z") + "-000000", Time: ts})
	}
	b, _ := json.Marshal(snaps)
	file := filepath.Join(dir, "snaps.json")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), []string{"policy", "test", wasm, "--snapshots", file, "--now", now.Format(time.RFC3339),
		"--params", `{"weekdays":["Sunday"],"keep_days":7,"max_age_days":21}`}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var out retention.Output
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	kept := 0
	for i, d := range out.Decisions {
		age := now.Sub(snaps[i].Time)
		want := age < 7*24*time.Hour || (snaps[i].Time.Weekday() == time.Sunday && age < 21*24*time.Hour)
		if d.Keep != want {
			t.Errorf("%s (%s): keep %v (%s)", d.ID, snaps[i].Time.Weekday(), d.Keep, d.Reason)
		}
		if d.Keep {
			kept++
		}
	}
	if kept != 9 { // 7 recent days + the two Sundays before them within 21 days
		t.Errorf("kept %d snapshots, want 9", kept)
	}
}
