// Command policy-keep-weekdays is an example nightjar retention policy written with
// sdk/policy: it keeps every snapshot of the last keep_days days, and older snapshots made
// on one of the given weekdays for max_age_days. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -o keep-weekdays.wasm .
//
// and try it with `nightjar policy test keep-weekdays.wasm --snapshots FILE --params
// '{"weekdays":["Sunday"],"keep_days":7,"max_age_days":90}'`. See docs/POLICY_GUIDE.md.
package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/nightjar-backup/nightjar/sdk/policy"
)

func main() { policy.Run(decide) }

// decide returns one decision per snapshot, in input order, with a reason for each.
func decide(in *policy.Input) ([]policy.Decision, error) {
	ps := policy.NewParams(in.Params)
	keepDays, err := ps.Int("keep_days", 7)
	if err != nil {
		return nil, err
	}
	maxAge, err := ps.Int("max_age_days", 90)
	if err != nil {
		return nil, err
	}
	days, err := weekdays(ps.Value("weekdays"))
	if err != nil {
		return nil, err
	}
	if err := ps.Unknown(); err != nil {
		return nil, err
	}
	recent := in.Now.AddDate(0, 0, -keepDays)
	oldest := in.Now.AddDate(0, 0, -maxAge)
	out := make([]policy.Decision, 0, len(in.Snapshots))
	for _, s := range in.Snapshots {
		t := s.Time.UTC() // nightjar's snapshot times are UTC; decide in UTC too
		d := policy.Decision{ID: s.ID}
		switch {
		case t.After(recent):
			d.Keep, d.Reason = true, fmt.Sprintf("within the last %d days", keepDays)
		case days[t.Weekday()] && t.After(oldest):
			d.Keep, d.Reason = true, fmt.Sprintf("%s snapshot, younger than %d days", t.Weekday(), maxAge)
		default:
			d.Reason = fmt.Sprintf("%s snapshot older than %d days", t.Weekday(), keepDays)
		}
		out = append(out, d)
	}
	return out, nil
}

// weekdays reads a list of weekday names ("Sunday" or "sun"); the default is Sunday.
func weekdays(v any) (map[time.Weekday]bool, error) {
	out := map[time.Weekday]bool{}
	if v == nil {
		out[time.Sunday] = true
		return out, nil
	}
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, fmt.Errorf(`param weekdays: expected a list of weekday names such as ["Sunday", "Wednesday"], got %v`, v)
	}
	for _, e := range list {
		name, _ := e.(string)
		found := false
		for d := time.Sunday; d <= time.Saturday; d++ {
			if strings.EqualFold(name, d.String()) || strings.EqualFold(name, d.String()[:3]) {
				out[d], found = true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("param weekdays: unknown weekday %q", e)
		}
	}
	return out, nil
}
