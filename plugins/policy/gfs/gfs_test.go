package gfs_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/plugins/policy/gfs"
	"github.com/nightjar-backup/nightjar/sdk/policy"
)

func TestParseParams(t *testing.T) {
	tests := []struct {
		params map[string]any
		want   string // error substring; "" = valid
	}{
		{map[string]any{"keep_daily": 7.0}, ""},
		{map[string]any{"keep_daily": -1.0}, ""},
		{map[string]any{"keep_tag": []any{[]any{"a", "b"}, "c,d"}}, ""},
		{map[string]any{}, "empty policy"},
		{map[string]any{"keep_daily": 0.0, "keep_within": ""}, "empty policy"},
		{map[string]any{"keep_dialy": 7.0}, "unknown param(s) keep_dialy"},
		{map[string]any{"keep_daily": 1.5}, "expected an integer"},
		{map[string]any{"keep_daily": "7"}, ""},
		{map[string]any{"keep_daily": "seven"}, "expected an integer"},
		{map[string]any{"keep_daily": -2.0}, "-1 for unlimited"},
		{map[string]any{"keep_within": "7w"}, `unknown unit 'w'`},
		{map[string]any{"keep_within": "d"}, "invalid duration"},
		{map[string]any{"keep_tag": "monthly"}, "list of tag lists"},
		{map[string]any{"keep_last": 1.0, "keep_oldest": "no"}, "true or false"},
	}
	for _, tc := range tests {
		_, err := gfs.ParseParams(tc.params)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: err %v, want %q", tc.params, err, tc.want)
		}
	}
}

func TestDuration(t *testing.T) {
	for in, want := range map[string]string{"1y1d1m": "1y1m1d", "13d23h": "13d23h", "2m2h": "2m2h", "0d": "", "": ""} {
		d, err := gfs.ParseDuration(in)
		if err != nil || d.String() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %q", in, d, err, want)
		}
	}
}

// TestBucketsUseRecordedOffset: like restic, a snapshot's day is the wall-clock day of its
// time as written (offset included), not its UTC day. In UTC all three are on March 2nd and
// only the newest would be kept.
func TestBucketsUseRecordedOffset(t *testing.T) {
	ny := time.FixedZone("", -5*3600)
	snaps := []policy.Snapshot{
		{ID: "a", Time: time.Date(2026, 3, 1, 23, 30, 0, 0, ny)},     // 2026-03-02 04:30 UTC
		{ID: "b", Time: time.Date(2026, 3, 1, 22, 30, 0, 0, ny)},     // same local day as a
		{ID: "c", Time: time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)}, // UTC day 2 like a, local day 1
	}
	p := &gfs.Policy{Daily: 5}
	m, _ := p.Apply(snaps, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	// Newest first: a (04:30Z, day 1 as written), b (03:30Z, day 1: same bucket), c (01:00Z, day 2).
	keep := func(i int) bool { return len(m[i]) > 0 }
	if !keep(0) || !keep(2) {
		t.Fatalf("a and c are on different recorded days and must both be kept: %v", m)
	}
}

// TestWithinCountsFromNewestBeforeNow: a snapshot dated in the future does not move the
// keep_within window (restic's findLatestTimestamp).
func TestWithinCountsFromNewestBeforeNow(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	snaps := []policy.Snapshot{
		{ID: "future", Time: now.AddDate(1, 0, 0)},
		{ID: "recent", Time: now.AddDate(0, 0, -10)},
		{ID: "older", Time: now.AddDate(0, 0, -14)},
		{ID: "old", Time: now.AddDate(0, 0, -20)},
	}
	p := &gfs.Policy{Within: gfs.Duration{Days: 7}}
	m, _ := p.Apply(snaps, now)
	got := []bool{len(m[0]) > 0, len(m[1]) > 0, len(m[2]) > 0, len(m[3]) > 0}
	if got[0] != true || got[1] != true || got[2] != true || got[3] != false {
		t.Fatalf("keep %v; want [true true true false]", got)
	}
}
