// Package gfs is nightjar's built-in retention policy: grandfather-father-son rules with
// exactly the semantics of `restic forget` (restic >= 0.16, internal/data/snapshot_policy.go),
// so restic users get identical decisions.
//
// The policy runs as WebAssembly (wasm/ is its main, built to gfs.wasm and embedded in the
// nightjar binary); this package is plain Go so it can also be tested and benchmarked
// natively.
//
// Time zones: restic buckets a snapshot by the wall clock of its recorded time. So does gfs:
// a snapshot's day, week (ISO 8601), month and year are those of its `time` string as
// written, offset included. nightjar always writes UTC, so its buckets are UTC days.
package gfs

import (
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nightjar-backup/nightjar/sdk/policy"
)

// Policy is a parsed gfs parameter set. Counts: 0 = rule off, -1 = unlimited.
type Policy struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	Within                                       Duration
	WithinHourly, WithinDaily, WithinWeekly      Duration
	WithinMonthly, WithinYearly                  Duration
	Tags                                         [][]string
	// KeepOldest applies restic 0.16's rule: a count rule with counts left also keeps the
	// oldest snapshot. false gives restic < 0.16's decisions.
	KeepOldest bool
}

// Empty reports whether no rule is set. An empty policy is refused: restic's ApplyPolicy
// would delete everything.
func (p *Policy) Empty() bool {
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 && p.Monthly == 0 && p.Yearly == 0 &&
		p.Within.Zero() && p.WithinHourly.Zero() && p.WithinDaily.Zero() && p.WithinWeekly.Zero() &&
		p.WithinMonthly.Zero() && p.WithinYearly.Zero() && len(p.Tags) == 0
}

// ParseParams reads a policy from ABI params.
func ParseParams(m map[string]any) (*Policy, error) {
	ps := policy.NewParams(m)
	p := &Policy{}
	var err error
	for _, c := range []struct {
		key string
		dst *int
	}{{"keep_last", &p.Last}, {"keep_hourly", &p.Hourly}, {"keep_daily", &p.Daily}, {"keep_weekly", &p.Weekly},
		{"keep_monthly", &p.Monthly}, {"keep_yearly", &p.Yearly}} {
		if *c.dst, err = ps.Int(c.key, 0); err != nil {
			return nil, err
		}
		if *c.dst < -1 {
			return nil, errors.New("param " + c.key + ": expected a count >= 0, or -1 for unlimited, got " + strconv.Itoa(*c.dst))
		}
	}
	for _, c := range []struct {
		key string
		dst *Duration
	}{{"keep_within", &p.Within}, {"keep_within_hourly", &p.WithinHourly}, {"keep_within_daily", &p.WithinDaily},
		{"keep_within_weekly", &p.WithinWeekly}, {"keep_within_monthly", &p.WithinMonthly}, {"keep_within_yearly", &p.WithinYearly}} {
		s, err := ps.String(c.key, "")
		if err != nil {
			return nil, err
		}
		if *c.dst, err = ParseDuration(s); err != nil {
			return nil, errors.New("param " + c.key + ": " + err.Error())
		}
	}
	if p.Tags, err = parseTags(ps.Value("keep_tag")); err != nil {
		return nil, err
	}
	if p.KeepOldest, err = ps.Bool("keep_oldest", true); err != nil {
		return nil, err
	}
	if err := ps.Unknown(); err != nil {
		return nil, err
	}
	if p.Empty() {
		return nil, errors.New("empty policy: it would delete every snapshot; set at least one of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within*, keep_tag")
	}
	return p, nil
}

// parseTags accepts a list of tag lists ([["a","b"],["c"]]) or, like restic's --keep-tag
// flag, a list of comma-separated strings (["a,b","c"]).
func parseTags(v any) ([][]string, error) {
	if v == nil {
		return nil, nil
	}
	const want = `param keep_tag: expected a list of tag lists, e.g. [["monthly"], ["manual", "pinned"]]`
	list, ok := v.([]any)
	if !ok {
		return nil, errors.New(want + ", got " + policy.Describe(v))
	}
	var out [][]string
	for _, e := range list {
		switch e := e.(type) {
		case string:
			var l []string
			for _, t := range strings.Split(e, ",") {
				if t = strings.TrimSpace(t); t != "" {
					l = append(l, t)
				}
			}
			out = append(out, l)
		case []any:
			l := []string{}
			for _, t := range e {
				s, ok := t.(string)
				if !ok {
					return nil, errors.New(want + ", got " + policy.Describe(v))
				}
				l = append(l, s)
			}
			out = append(out, l)
		default:
			return nil, errors.New(want + ", got " + policy.Describe(v))
		}
	}
	return out, nil
}

// Duration is restic's calendar duration: years, months, days and hours ("1y2m3d4h").
type Duration struct{ Years, Months, Days, Hours int }

// Zero reports whether d is zero (the rule is off).
func (d Duration) Zero() bool { return d == Duration{} }

// String formats d as restic does: units in order y m d h, zero units left out.
func (d Duration) String() string {
	var b strings.Builder
	for _, u := range []struct {
		n    int
		unit string
	}{{d.Years, "y"}, {d.Months, "m"}, {d.Days, "d"}, {d.Hours, "h"}} {
		if u.n != 0 {
			b.WriteString(strconv.Itoa(u.n))
			b.WriteString(u.unit)
		}
	}
	return b.String()
}

// ParseDuration parses "1y2m3d4h" (any order, each unit at most once makes sense but a
// repeated unit adds up, as in restic). "" is the zero duration.
func ParseDuration(s string) (Duration, error) {
	var d Duration
	rest := strings.TrimSpace(s)
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) {
			return Duration{}, errors.New("invalid duration " + strconv.Quote(s) + ": expected numbers with units y, m, d or h, e.g. 1y2m3d4h")
		}
		n := 0
		for _, c := range rest[:i] {
			n = n*10 + int(c-'0')
			if n > 1<<20 {
				return Duration{}, errors.New("invalid duration " + strconv.Quote(s) + ": number too large")
			}
		}
		switch rest[i] {
		case 'y':
			d.Years += n
		case 'm':
			d.Months += n
		case 'd':
			d.Days += n
		case 'h':
			d.Hours += n
		default:
			return Duration{}, errors.New("invalid duration " + strconv.Quote(s) + ": unknown unit " + strconv.QuoteRune(rune(rest[i])) + " (use y, m, d or h)")
		}
		rest = rest[i+1:]
	}
	return d, nil
}

func (d Duration) before(t time.Time) time.Time {
	return t.AddDate(-d.Years, -d.Months, -d.Days).Add(-time.Duration(d.Hours) * time.Hour)
}

// keys are a snapshot's period numbers, as restic computes them: YYYYMMDDHH, YYYYMMDD,
// ISO YYYYWW, YYYYMM and YYYY of its wall clock.
type keys struct{ hour, day, week, month, year int }

func keysOf(t time.Time, weeks bool) keys {
	y, m, d := t.Date()
	k := keys{hour: y*1000000 + int(m)*10000 + d*100 + t.Hour(), day: y*10000 + int(m)*100 + d, month: y*100 + int(m), year: y}
	if weeks {
		wy, w := t.ISOWeek()
		k.week = wy*100 + w
	}
	return k
}

// bucket kinds, in restic's order.
const (
	kindLast = iota
	kindHour
	kindDay
	kindWeek
	kindMonth
	kindYear
)

func (k *keys) get(kind, nr int) int {
	switch kind {
	case kindHour:
		return k.hour
	case kindDay:
		return k.day
	case kindWeek:
		return k.week
	case kindMonth:
		return k.month
	case kindYear:
		return k.year
	}
	return nr // keep_last: every snapshot is its own bucket
}

// Kept is one kept snapshot with restic's match strings ("daily snapshot", "within 7d").
type Kept struct {
	Index   int // into the input slice
	Matches []string
}

// Apply evaluates p over snaps (any order) with now as the current time. It returns, for
// each input index, the matched rules (nil = delete), and the evaluation order (newest first,
// ties in input order, as restic's stable sort).
func (p *Policy) Apply(snaps []policy.Snapshot, now time.Time) (matches [][]string, order []int) {
	order = make([]int, len(snaps))
	for i := range order {
		order[i] = i
	}
	// The host sends snapshots newest first; sort only when they are not (a stable sort,
	// like restic's, so equal times keep their input order).
	sorted := true
	for i := 1; i < len(snaps); i++ {
		if snaps[i].Time.After(snaps[i-1].Time) {
			sorted = false
			break
		}
	}
	if !sorted {
		sort.SliceStable(order, func(a, b int) bool { return snaps[order[a]].Time.After(snaps[order[b]].Time) })
	}
	matches = make([][]string, len(snaps))
	if len(snaps) == 0 {
		return matches, order
	}
	type bucket struct {
		count  int
		within Duration
		kind   int
		last   int
		reason string
	}
	counts := []bucket{
		{count: p.Last, kind: kindLast, last: -1, reason: "last snapshot"},
		{count: p.Hourly, kind: kindHour, last: -1, reason: "hourly snapshot"},
		{count: p.Daily, kind: kindDay, last: -1, reason: "daily snapshot"},
		{count: p.Weekly, kind: kindWeek, last: -1, reason: "weekly snapshot"},
		{count: p.Monthly, kind: kindMonth, last: -1, reason: "monthly snapshot"},
		{count: p.Yearly, kind: kindYear, last: -1, reason: "yearly snapshot"},
	}
	withins := []bucket{
		{within: p.WithinHourly, kind: kindHour, last: -1, reason: "hourly within"},
		{within: p.WithinDaily, kind: kindDay, last: -1, reason: "daily within"},
		{within: p.WithinWeekly, kind: kindWeek, last: -1, reason: "weekly within"},
		{within: p.WithinMonthly, kind: kindMonth, last: -1, reason: "monthly within"},
		{within: p.WithinYearly, kind: kindYear, last: -1, reason: "yearly within"},
	}
	weeks := p.Weekly != 0 || !p.WithinWeekly.Zero()
	// restic counts "within" back from the newest snapshot that is not in the future.
	var latest time.Time
	for i := range snaps {
		if t := snaps[i].Time; t.After(latest) && t.Before(now) {
			latest = t
		}
	}
	var withinCut time.Time
	if !p.Within.Zero() {
		withinCut = p.Within.before(latest)
	}
	withinCuts := make([]time.Time, len(withins))
	for i, b := range withins {
		withinCuts[i] = b.within.before(latest)
	}
	oldest := len(order) - 1
	for nr, idx := range order {
		cur := &snaps[idx]
		k := keysOf(cur.Time, weeks)
		var m []string
		for _, l := range p.Tags {
			if cur.HasTags(l) {
				m = append(m, "has tags ["+strings.Join(l, ", ")+"]")
			}
		}
		if !p.Within.Zero() && cur.Time.After(withinCut) {
			m = append(m, "within "+p.Within.String())
		}
		isOldest := p.KeepOldest && nr == oldest
		for i := range counts {
			b := &counts[i]
			if b.count == 0 {
				continue
			}
			val := k.get(b.kind, nr)
			if val != b.last || isOldest {
				reason := b.reason
				if val == b.last {
					reason = "oldest " + reason
				}
				b.last = val
				if b.count > 0 {
					b.count--
				}
				m = append(m, reason)
			}
		}
		for i := range withins {
			b := &withins[i]
			if b.within.Zero() || !cur.Time.After(withinCuts[i]) {
				continue
			}
			val := k.get(b.kind, nr)
			if val != b.last || isOldest {
				reason := b.reason
				if val == b.last {
					reason = "oldest " + reason
				}
				b.last = val
				m = append(m, reason+" "+b.within.String())
			}
		}
		matches[idx] = m
	}
	return matches, order
}

// Decide is the ABI entry point: it parses the params and returns one decision per snapshot,
// in input order.
func Decide(in *policy.Input) ([]policy.Decision, error) {
	p, err := ParseParams(in.Params)
	if err != nil {
		return nil, err
	}
	matches, _ := p.Apply(in.Snapshots, in.Now)
	out := make([]policy.Decision, len(in.Snapshots))
	for i := range in.Snapshots {
		d := policy.Decision{ID: in.Snapshots[i].ID}
		if m := matches[i]; len(m) > 0 {
			d.Keep, d.Reason = true, strings.Join(m, ", ")
		} else {
			d.Reason = "no rule keeps it"
		}
		out[i] = d
	}
	return out, nil
}
