package gfs_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core/retention"
	"github.com/nightjar-backup/nightjar/plugins/policy/gfs"
)

type conformanceCase struct {
	Case    int            `json:"case"`
	Policy  map[string]any `json:"policy"`
	Keep    []string       `json:"keep"`
	Reasons []struct {
		ID      string   `json:"id"`
		Matches []string `json:"matches"`
	} `json:"reasons"`
}

func loadConformance(t testing.TB) ([]retention.Snapshot, []conformanceCase) {
	t.Helper()
	var snaps struct {
		Snapshots []retention.Snapshot `json:"snapshots"`
	}
	var cases []conformanceCase
	for name, v := range map[string]any{"snapshots.json": &snaps, "cases.json": &cases} {
		b, err := os.ReadFile(filepath.Join("testdata", "restic-forget", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if len(snaps.Snapshots) != 103 || len(cases) != 40 {
		t.Fatalf("conformance data: %d snapshots, %d cases; expected 103 and 40", len(snaps.Snapshots), len(cases))
	}
	return snaps.Snapshots, cases
}

// builtins registers gfs as the nightjar binary does.
func builtins() map[string]retention.Builtin {
	return map[string]retention.Builtin{gfs.Name: gfs.Builtin()}
}

func compileGFS(t testing.TB, h *retention.Host) *retention.Policy {
	t.Helper()
	p, err := h.Compile(context.Background(), gfs.Name, gfs.Module, retention.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// TestResticConformance runs restic's own 40 policy cases through the embedded WASM module:
// the kept set, its order (newest first, ties in input order) and the rules named in each
// reason must equal restic's.
func TestResticConformance(t *testing.T) {
	snaps, cases := loadConformance(t)
	h, err := retention.NewHost(t.TempDir(), builtins())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	pol := compileGFS(t, h)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range cases {
		t.Run(strings.ReplaceAll(policyName(c.Policy), " ", "_"), func(t *testing.T) {
			in := &retention.Input{ABI: 1, Now: now, Pipeline: "p", Sink: "s", Params: c.Policy, Snapshots: snaps}
			out, err := pol.Evaluate(context.Background(), in)
			if c.Case == 0 {
				if err == nil || !strings.Contains(err.Error(), "empty policy") {
					t.Fatalf("empty policy: want a refusal naming it, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			reason := map[string]string{}
			keep := map[string]bool{}
			for _, d := range out.Decisions {
				keep[d.ID], reason[d.ID] = d.Keep, d.Reason
			}
			var got []string
			for _, s := range sortedNewestFirst(snaps) {
				if keep[s.ID] {
					got = append(got, s.ID)
				}
			}
			if !reflect.DeepEqual(got, c.Keep) {
				t.Fatalf("case %d %v:\n got  %v\n want %v", c.Case, c.Policy, got, c.Keep)
			}
			for _, r := range c.Reasons {
				want := strings.Join(r.Matches, ", ")
				if reason[r.ID] != want {
					t.Errorf("case %d %s: reason %q, restic says %q", c.Case, r.ID, reason[r.ID], want)
				}
			}
		})
	}
}

func policyName(p map[string]any) string {
	keys := make([]string, 0, len(p))
	for k, v := range p {
		b, _ := json.Marshal(v)
		keys = append(keys, k+"="+string(b))
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return "empty"
	}
	return strings.Join(keys, ",")
}

func sortedNewestFirst(s []retention.Snapshot) []retention.Snapshot {
	c := append([]retention.Snapshot(nil), s...)
	sort.SliceStable(c, func(i, j int) bool { return c[i].Time.After(c[j].Time) })
	return c
}
