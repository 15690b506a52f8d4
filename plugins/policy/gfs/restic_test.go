package gfs_test

import (
	"context"
	"encoding/json"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core/retention"
	"github.com/nightjar-backup/nightjar/core/testenv"
)

// resticRepo is a real restic repository filled with snapshots at chosen times.
type resticRepo struct {
	t    *testing.T
	bin  string
	dir  string
	env  []string
	file string
}

func newResticRepo(t *testing.T, tz string) *resticRepo {
	t.Helper()
	bin := testenv.Tool(t, "restic")
	tmp := t.TempDir()
	pw := filepath.Join(tmp, "password")
	data := filepath.Join(tmp, "data.txt")
	for _, f := range []string{pw, data} {
		if err := os.WriteFile(f, []byte("nightjar-test\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := &resticRepo{t: t, bin: bin, dir: filepath.Join(tmp, "repo"), file: data,
		env: testenv.Env(t, "TZ="+tz, "RESTIC_PASSWORD_FILE="+pw, "RESTIC_REPOSITORY="+filepath.Join(tmp, "repo"),
			"RESTIC_CACHE_DIR="+filepath.Join(tmp, "cache"))}
	r.run("init")
	return r
}

func (r *resticRepo) run(args ...string) []byte {
	r.t.Helper()
	cmd := exec.Command(r.bin, args...)
	cmd.Env = r.env
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		r.t.Fatalf("restic %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	return out
}

// backup makes a snapshot whose time is t's wall clock in the repository's TZ.
func (r *resticRepo) backup(t time.Time, tags []string) {
	args := []string{"backup", "--quiet", "--host", "nightjar-test", "--time", t.Format("2006-01-02 15:04:05")}
	for _, tag := range tags {
		args = append(args, "--tag", tag)
	}
	r.run(append(args, r.file)...)
}

func (r *resticRepo) snapshots() []retention.Snapshot {
	var list []struct {
		ID   string    `json:"id"`
		Time time.Time `json:"time"`
		Tags []string  `json:"tags"`
	}
	if err := json.Unmarshal(r.run("snapshots", "--json"), &list); err != nil {
		r.t.Fatal(err)
	}
	out := make([]retention.Snapshot, len(list))
	for i, s := range list {
		out[i] = retention.Snapshot{ID: s.ID, Time: s.Time, Tags: s.Tags}
	}
	return out
}

// forget returns the ids restic keeps for a policy, newest first.
func (r *resticRepo) forget(params map[string]any) []string {
	args := []string{"forget", "--dry-run", "--json"}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		flag := "--" + strings.ReplaceAll(k, "_", "-")
		switch v := params[k].(type) {
		case float64:
			args = append(args, flag, strconv.Itoa(int(v)))
		case string:
			args = append(args, flag, v)
		case []any:
			for _, l := range v {
				args = append(args, flag, l.(string))
			}
		}
	}
	var groups []struct {
		Keep []struct {
			ID string `json:"id"`
		} `json:"keep"`
	}
	if err := json.Unmarshal(r.run(args...), &groups); err != nil {
		r.t.Fatal(err)
	}
	if len(groups) != 1 {
		r.t.Fatalf("restic forget: %d groups, expected 1", len(groups))
	}
	var ids []string
	for _, k := range groups[0].Keep {
		ids = append(ids, k.ID)
	}
	return ids
}

// timeline returns n snapshot times with nightly runs, gaps, bursts within one hour and one
// day, and runs around the ISO week-year boundary, all distinct, oldest first.
func timeline(rng *rand.Rand, end time.Time, n int) []time.Time {
	seen := map[int64]bool{}
	var ts []time.Time
	add := func(t time.Time) {
		t = t.Truncate(time.Second)
		if !seen[t.Unix()] && !t.After(end) {
			seen[t.Unix()] = true
			ts = append(ts, t)
		}
	}
	for len(ts) < n {
		switch rng.Intn(4) {
		case 0: // a run some days back
			add(end.Add(-time.Duration(rng.Int63n(int64(900 * 24 * time.Hour)))))
		case 1: // a burst within one hour
			base := end.Add(-time.Duration(rng.Int63n(int64(60 * 24 * time.Hour))))
			for i := 0; i < 3; i++ {
				add(base.Add(time.Duration(rng.Intn(3600)) * time.Second))
			}
		case 2: // near midnight and around new year (ISO weeks)
			y := end.Year() - rng.Intn(3)
			add(time.Date(y, 12, 28+rng.Intn(4), 23, rng.Intn(60), rng.Intn(60), 0, end.Location()))
			add(time.Date(y+1, 1, 1+rng.Intn(4), rng.Intn(2), rng.Intn(60), rng.Intn(60), 0, end.Location()))
		default: // recent nightly
			add(time.Date(end.Year(), end.Month(), end.Day()-rng.Intn(20), 2, rng.Intn(10), rng.Intn(60), 0, end.Location()))
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	return ts[:n]
}

// resticPolicies are flags restic 0.14 understands (no -1 counts: unlimited came in 0.15).
var resticPolicies = []map[string]any{
	{"keep_last": 5.0},
	{"keep_hourly": 10.0},
	{"keep_daily": 7.0, "keep_weekly": 4.0, "keep_monthly": 12.0},
	{"keep_weekly": 10.0},
	{"keep_monthly": 3.0, "keep_yearly": 3.0},
	{"keep_daily": 3.0, "keep_weekly": 2.0, "keep_monthly": 2.0, "keep_yearly": 5.0},
	{"keep_within": "2m"},
	{"keep_within": "1y2m3d4h"},
	{"keep_within_hourly": "3d"},
	{"keep_within_daily": "30d", "keep_within_weekly": "6m", "keep_within_monthly": "2y"},
	{"keep_within_yearly": "9999y", "keep_last": 2.0},
	{"keep_tag": []any{"monthly"}},
	{"keep_tag": []any{"a,b"}, "keep_daily": 2.0},
	{"keep_daily": 400.0},
}

// TestAgainstRestic compares the embedded module's decisions with the real `restic forget
// --dry-run --json` on generated timelines, in UTC and in a zone with DST. The installed
// restic (0.14) predates restic 0.16's rule for the oldest snapshot, so gfs runs with
// keep_oldest: false there; with the default (true) it may keep exactly one more snapshot,
// the oldest.
func TestAgainstRestic(t *testing.T) {
	if testing.Short() {
		t.Skip("makes real restic snapshots")
	}
	for _, tc := range []struct {
		tz   string
		n    int
		seed int64
	}{{"UTC", 60, 1}, {"America/New_York", 30, 2}} {
		t.Run(tc.tz, func(t *testing.T) {
			loc, err := time.LoadLocation(tc.tz)
			if err != nil {
				t.Fatal(err)
			}
			repo := newResticRepo(t, tc.tz)
			rng := rand.New(rand.NewSource(tc.seed))
			end := time.Now().In(loc).Add(-time.Hour)
			tagSets := [][]string{nil, nil, nil, {"monthly"}, {"a", "b"}, {"a"}}
			for _, ts := range timeline(rng, end, tc.n) {
				repo.backup(ts, tagSets[rng.Intn(len(tagSets))])
			}
			snaps := repo.snapshots()
			if len(snaps) != tc.n {
				t.Fatalf("restic has %d snapshots, want %d", len(snaps), tc.n)
			}
			h, err := retention.NewHost(t.TempDir(), builtins())
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close(context.Background())
			pol := compileGFS(t, h)
			for _, params := range resticPolicies {
				t.Run(policyName(params), func(t *testing.T) {
					want := repo.forget(params)
					legacy := withParam(params, "keep_oldest", false)
					got := keptNewestFirst(t, pol, snaps, legacy)
					if strings.Join(got, " ") != strings.Join(want, " ") {
						t.Fatalf("%v:\n nightjar %v\n restic   %v", params, got, want)
					}
					// restic >= 0.16: the same, plus possibly the oldest snapshot.
					modern := keptNewestFirst(t, pol, snaps, params)
					extra := difference(modern, got)
					if len(difference(got, modern)) > 0 || len(extra) > 1 ||
						(len(extra) == 1 && extra[0] != sortedNewestFirst(snaps)[len(snaps)-1].ID) {
						t.Fatalf("%v: keep_oldest changed more than the oldest snapshot: %v vs %v", params, modern, got)
					}
				})
			}
		})
	}
}

func withParam(p map[string]any, k string, v any) map[string]any {
	c := map[string]any{k: v}
	for key, val := range p {
		c[key] = val
	}
	return c
}

func keptNewestFirst(t *testing.T, pol *retention.Policy, snaps []retention.Snapshot, params map[string]any) []string {
	t.Helper()
	out, err := pol.Evaluate(context.Background(), &retention.Input{Now: time.Now(), Params: params, Snapshots: snaps})
	if err != nil {
		t.Fatal(err)
	}
	keep := map[string]bool{}
	for _, d := range out.Decisions {
		keep[d.ID] = d.Keep
	}
	var ids []string
	for _, s := range sortedNewestFirst(snaps) {
		if keep[s.ID] {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

func difference(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var d []string
	for _, x := range a {
		if !in[x] {
			d = append(d, x)
		}
	}
	return d
}
