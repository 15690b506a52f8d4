package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/retention"
	"github.com/nightjar-backup/nightjar/core/snapstore"
	"github.com/nightjar-backup/nightjar/plugins/sink/local"
)

// pruneFixture is a pipeline whose local sink holds daily snapshots made in the past.
type pruneFixture struct {
	t       *testing.T
	dir     string
	backups string
	config  string
	ids     []core.SnapshotID // oldest first
}

func newPruneFixture(t *testing.T, days int, retentionYAML string) *pruneFixture {
	t.Helper()
	dir := t.TempDir()
	f := &pruneFixture{t: t, dir: dir, backups: filepath.Join(dir, "backups"), config: filepath.Join(dir, "nightjar.yaml")}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "file.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`version: 1
pipeline: prunetest
state_dir: %s
sources:
  - {name: data, type: tree, path: %s}
sinks:
  - name: local
    type: local
    path: %s
    retention: %s
`, filepath.Join(dir, "state"), filepath.Join(dir, "data"), f.backups, retentionYAML)
	if err := os.WriteFile(f.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := local.NewStore(f.backups)
	if err != nil {
		t.Fatal(err)
	}
	sink := snapstore.New(store, "prunetest")
	now := time.Now().UTC()
	for i := days; i >= 1; i-- {
		started := now.AddDate(0, 0, -i)
		id := core.NewSnapshotID(started)
		f.ids = append(f.ids, id)
		st, err := sink.Put(context.Background(), id, "data.tar", strings.NewReader("tar bytes"))
		if err != nil {
			t.Fatal(err)
		}
		m := &core.Manifest{Format: core.ManifestFormat, ID: id, Pipeline: "prunetest", Host: "h", Started: started,
			Finished: started.Add(time.Minute), Artifacts: []core.Artifact{{Name: "data", Source: "tree", Object: "data.tar",
				Size: 9, StoredSize: st.Size, Transforms: []map[string]string{}}}}
		if err := sink.Commit(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// leftover writes an incomplete snapshot (an object, no manifest) started at t.
func (f *pruneFixture) leftover(t time.Time) core.SnapshotID {
	id := core.NewSnapshotID(t)
	p := filepath.Join(f.backups, "prunetest", string(id), "data.tar")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return id
}

// folders lists the snapshot folders on disk (complete or not).
func (f *pruneFixture) folders() map[string]bool {
	ents, err := os.ReadDir(filepath.Join(f.backups, "prunetest"))
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

func (f *pruneFixture) nightjar(args ...string) (int, string, string) {
	f.t.Helper()
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), append(args, "-c", f.config), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestPruneEndToEnd(t *testing.T) {
	f := newPruneFixture(t, 10, "{policy: gfs, params: {keep_daily: 6}, grace: 24h}")
	oldLeft := f.leftover(time.Now().Add(-48 * time.Hour))
	freshLeft := f.leftover(time.Now().Add(-time.Hour))

	// --dry-run prints the plan and deletes nothing.
	code, out, errOut := f.nightjar("prune", "--dry-run", "--json")
	if code != 0 {
		t.Fatalf("prune --dry-run: exit %d: %s", code, errOut)
	}
	var rep pruneReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("prune --json output: %v\n%s", err, out)
	}
	if !rep.DryRun || rep.Plan.Total != 10 || rep.Plan.Deletes != 4 || rep.Result != nil || len(f.folders()) != 12 {
		t.Fatalf("dry run: %+v, %d folders", rep.Plan, len(f.folders()))
	}
	for i, it := range rep.Plan.Items { // newest first: the 6 newest are daily snapshots
		if it.Keep != (i < 6) || (it.Keep && !strings.Contains(it.Reason, "daily snapshot")) {
			t.Errorf("item %d: %+v", i, it)
		}
	}

	// A real prune deletes the 4 oldest and the old leftover only.
	code, out, errOut = f.nightjar("prune")
	if code != 0 {
		t.Fatalf("prune: exit %d: %s\n%s", code, errOut, out)
	}
	if !strings.Contains(out, "deleted 4 snapshots and 1 leftovers") {
		t.Errorf("prune output:\n%s", out)
	}
	left := f.folders()
	for i, id := range f.ids {
		if left[string(id)] != (i >= 4) {
			t.Errorf("snapshot %d %s present=%v", i, id, left[string(id)])
		}
	}
	if left[string(oldLeft)] || !left[string(freshLeft)] {
		t.Errorf("leftovers: old present=%v, fresh present=%v", left[string(oldLeft)], left[string(freshLeft)])
	}
}

func TestPruneGuardrailsThroughCLI(t *testing.T) {
	f := newPruneFixture(t, 6, "{policy: gfs, params: {keep_last: 1}}")
	// 5 of 6 is more than max_delete_fraction 0.5: held, nothing deleted, exit 1.
	code, out, errOut := f.nightjar("prune")
	if code != exitFailed || !strings.Contains(errOut, "--force") || len(f.folders()) != 6 {
		t.Fatalf("mass delete without --force: exit %d, %d folders\n%s\n%s", code, len(f.folders()), out, errOut)
	}
	code, _, errOut = f.nightjar("prune", "--force")
	if code != 0 {
		t.Fatalf("prune --force: exit %d: %s", code, errOut)
	}
	if left := f.folders(); len(left) != 1 || !left[string(f.ids[5])] {
		t.Fatalf("after --force: %v; want only the newest %s", left, f.ids[5])
	}
}

func TestPruneBadPolicyDeletesNothing(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "garbage.wasm")
	if err := os.WriteFile(bad, []byte("this is not WebAssembly"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newPruneFixture(t, 4, "{policy: "+bad+"}")
	code, _, errOut := f.nightjar("prune", "--force")
	if code == 0 || !strings.Contains(errOut, "nothing deleted") || len(f.folders()) != 4 {
		t.Fatalf("bad policy: exit %d, %d folders: %s", code, len(f.folders()), errOut)
	}
	f = newPruneFixture(t, 4, "{policy: gfs, params: {keep_dayly: 3}}")
	code, _, errOut = f.nightjar("prune", "--force")
	if code == 0 || !strings.Contains(errOut, "unknown param(s) keep_dayly") || len(f.folders()) != 4 {
		t.Fatalf("misspelt param: exit %d, %d folders: %s", code, len(f.folders()), errOut)
	}
}

// TestRunAppliesRetention: run commits a snapshot, then prunes with the sink's policy.
func TestRunAppliesRetention(t *testing.T) {
	f := newPruneFixture(t, 3, "{policy: gfs, params: {keep_last: 2}}")
	code, out, errOut := f.nightjar("run")
	if code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	left := f.folders()
	if len(left) != 2 || !left[string(f.ids[2])] || !strings.Contains(out, "2 deleted") {
		t.Fatalf("after run: %v\n%s", left, out)
	}
}

func TestPolicyTestCommand(t *testing.T) {
	dir := t.TempDir()
	snaps := []retention.Snapshot{
		{ID: "new", Time: time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC)},
		{ID: "same-day", Time: time.Date(2026, 11, 21, 1, 0, 0, 0, time.UTC)},
		{ID: "old", Time: time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)},
	}
	b, _ := json.Marshal(snaps)
	file := filepath.Join(dir, "snaps.json")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), []string{"policy", "test", "gfs", "--snapshots", file,
		"--params", `{"keep_daily":7}`, "--now", "2026-11-22T00:00:00Z"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var out retention.Output
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"new": true, "same-day": false, "old": true}
	for _, d := range out.Decisions {
		if d.Keep != want[d.ID] {
			t.Errorf("%s: keep %v (%s)", d.ID, d.Keep, d.Reason)
		}
	}
	if out.ABI != 1 || len(out.Decisions) != 3 {
		t.Fatalf("output %+v", out)
	}
	stdout.Reset()
	code = execute(context.Background(), []string{"policy", "test", "gfs", "--simulate", "400d", "--every", "1d", "--json",
		"--params", `{"keep_daily":7,"keep_weekly":4,"keep_monthly":12}`, "--now", "2026-01-01T02:00:00Z"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("simulate: exit %d: %s", code, stderr.String())
	}
	var sim simReport
	if err := json.Unmarshal(stdout.Bytes(), &sim); err != nil {
		t.Fatal(err)
	}
	// 7 daily + up to 4 weekly + 12 monthly, overlapping; never more than 23, at least 12 monthly.
	if sim.Runs != 400 || len(sim.Remain) < 12 || len(sim.Remain) > 23 || sim.Deleted != 400-len(sim.Remain) {
		t.Fatalf("simulation: runs %d, remain %d, deleted %d", sim.Runs, len(sim.Remain), sim.Deleted)
	}
}
