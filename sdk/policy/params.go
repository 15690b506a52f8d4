package policy

import (
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Params reads a policy's parameters with clear errors. Every key read is remembered, so
// Unknown can refuse a misspelt one.
type Params struct {
	m    map[string]any
	used map[string]bool
}

// NewParams wraps in.Params.
func NewParams(m map[string]any) *Params { return &Params{m: m, used: map[string]bool{}} }

// Has reports whether key was given (and not null).
func (p *Params) Has(key string) bool {
	p.used[key] = true
	return p.m[key] != nil
}

// Int returns an integer parameter, or def when it is absent.
func (p *Params) Int(key string, def int) (int, error) {
	p.used[key] = true
	v, ok := p.m[key]
	if !ok || v == nil {
		return def, nil
	}
	if s, isString := v.(string); isString { // YAML users sometimes quote numbers
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return 0, errors.New("param " + key + ": expected an integer, got " + strconv.Quote(s))
		}
		return n, nil
	}
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		return 0, errors.New("param " + key + ": expected an integer, got " + Describe(v))
	}
	return int(f), nil
}

// String returns a string parameter, or def when it is absent.
func (p *Params) String(key, def string) (string, error) {
	p.used[key] = true
	v, ok := p.m[key]
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", errors.New("param " + key + ": expected a string, got " + Describe(v))
	}
	return s, nil
}

// Bool returns a boolean parameter, or def when it is absent.
func (p *Params) Bool(key string, def bool) (bool, error) {
	p.used[key] = true
	v, ok := p.m[key]
	if !ok || v == nil {
		return def, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, errors.New("param " + key + ": expected true or false, got " + Describe(v))
	}
	return b, nil
}

// Value returns a raw parameter value (nil when absent).
func (p *Params) Value(key string) any {
	p.used[key] = true
	return p.m[key]
}

// Unknown returns an error naming the parameters that were given but never read.
func (p *Params) Unknown() error {
	var unknown []string
	for k := range p.m {
		if !p.used[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	known := make([]string, 0, len(p.used))
	for k := range p.used {
		known = append(known, k)
	}
	sort.Strings(known)
	return errors.New("unknown param(s) " + strings.Join(unknown, ", ") + " (known: " + strings.Join(known, ", ") + ")")
}
