package core

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind is the type of a config field.
type Kind int

const (
	KindString    Kind = iota
	KindPath           // a string; relative paths resolve against the config file's folder
	KindInt            // int64
	KindFloat          // float64
	KindBool           // bool
	KindDuration       // "90s", "36h", "7d"
	KindStrings        // list of strings
	KindStringMap      // map of string to string
	KindMap            // any mapping (free-form, e.g. policy params)
)

func (k Kind) String() string {
	return [...]string{"string", "path", "integer", "number", "boolean", "duration",
		"list of strings", "mapping of strings", "mapping"}[k]
}

// Field declares one config key of a plugin. The same declaration validates config,
// words errors and generates docs.
type Field struct {
	Name     string
	Kind     Kind
	Required bool
	Default  any  // used when the key is absent; nil for none
	Secret   bool // never shown; may also be given as <name>_file (a file holding the value)
	Enum     []string
	Min, Max *float64 // bounds for numbers
	Doc      string
	Example  string
}

// Range returns pointers for Field.Min and Field.Max.
func Range(lo, hi float64) (*float64, *float64) { return &lo, &hi }

// Component is one validated source, transform or sink entry of a config.
type Component struct {
	Name string // configured name (sources, sinks); "" for transforms
	Type string
	Key  string // where it is in the config, e.g. "sinks[1]"
	File string

	lines   map[string]int
	values  map[string]any
	secrets map[string]bool
	given   map[string]bool
}

// NewComponent makes a Component from already-typed values; for tests and programmatic use.
func NewComponent(name, typ string, values map[string]any) *Component {
	c := &Component{Name: name, Type: typ, Key: typ, values: map[string]any{}, secrets: map[string]bool{}, given: map[string]bool{}}
	for k, v := range values {
		c.values[k] = v
		c.given[k] = true
	}
	return c
}

// Has reports whether the key was given in the config (not defaulted).
func (c *Component) Has(key string) bool { return c.given[key] }

// Value returns the validated value of key (or its default), nil if absent.
func (c *Component) Value(key string) any { return c.values[key] }

func (c *Component) String(key string) string { s, _ := c.values[key].(string); return s }
func (c *Component) Int(key string) int64     { n, _ := c.values[key].(int64); return n }
func (c *Component) Float(key string) float64 { f, _ := c.values[key].(float64); return f }
func (c *Component) Bool(key string) bool     { b, _ := c.values[key].(bool); return b }
func (c *Component) Duration(key string) time.Duration {
	d, _ := c.values[key].(time.Duration)
	return d
}
func (c *Component) Strings(key string) []string { s, _ := c.values[key].([]string); return s }
func (c *Component) StringMap(key string) map[string]string {
	m, _ := c.values[key].(map[string]string)
	return m
}
func (c *Component) Map(key string) map[string]any { m, _ := c.values[key].(map[string]any); return m }

// Values returns every validated value (secrets included: do not print it).
func (c *Component) Values() map[string]any { return c.values }

// Redacted returns the values with secrets replaced by "***", for display.
func (c *Component) Redacted() map[string]any {
	out := make(map[string]any, len(c.values))
	for k, v := range c.values {
		if c.secrets[k] {
			out[k] = "***"
			continue
		}
		if d, ok := v.(time.Duration); ok {
			v = FormatDuration(d)
		}
		out[k] = v
	}
	return out
}

// Errorf returns a ConfigError about key (relative to this component).
func (c *Component) Errorf(key, format string, args ...any) *ConfigError {
	full := c.Key
	if key != "" {
		full += "." + key
	}
	return &ConfigError{File: c.File, Line: c.lines[full], Key: full, Msg: fmt.Sprintf(format, args...)}
}

// DecodeFields validates raw (the component's keys as parsed from YAML, ${VAR} already
// expanded) against fields, into c. Keys in skip belong to the caller. Every problem is
// returned, not just the first. baseDir resolves relative paths.
func (c *Component) DecodeFields(fields []Field, raw map[string]any, skip map[string]bool, baseDir string, lines map[string]int) ConfigErrors {
	c.lines = lines
	if c.values == nil {
		c.values, c.secrets, c.given = map[string]any{}, map[string]bool{}, map[string]bool{}
	}
	var errs ConfigErrors
	known := map[string]bool{}
	for _, f := range fields {
		known[f.Name] = true
		if f.Secret {
			known[f.Name+"_file"] = true
		}
	}
	var unknown []string
	for k := range raw {
		if !known[k] && !skip[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs = append(errs, c.Errorf(k, "unknown key %q%s", k, suggest(k, fields)))
	}
	for _, f := range fields {
		if err := c.decodeField(f, raw, baseDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func (c *Component) decodeField(f Field, raw map[string]any, baseDir string) *ConfigError {
	v, ok := raw[f.Name]
	if f.Secret {
		c.secrets[f.Name] = true
		fv, fok := raw[f.Name+"_file"]
		switch {
		case ok && fok:
			return c.Errorf(f.Name, "give either %s or %s_file, not both", f.Name, f.Name)
		case fok:
			p, isStr := fv.(string)
			if !isStr || p == "" {
				return c.Errorf(f.Name+"_file", "expected a file path, got %s", describe(fv))
			}
			p = resolvePath(baseDir, p)
			b, err := os.ReadFile(p)
			if err != nil {
				return c.Errorf(f.Name+"_file", "cannot read secret file: %v", err)
			}
			v, ok = strings.TrimRight(string(b), "\r\n"), true
		}
	}
	if !ok || v == nil {
		if f.Required {
			hint := ""
			if f.Secret {
				hint = fmt.Sprintf(" (or %s_file)", f.Name)
			}
			if f.Example != "" {
				hint += ", e.g. " + f.Example
			}
			return c.Errorf(f.Name, "required key %q is missing%s", f.Name, hint)
		}
		if f.Default != nil {
			c.values[f.Name] = f.Default
		}
		return nil
	}
	val, err := convert(f, v)
	if err != nil {
		return c.Errorf(f.Name, "%s", err)
	}
	if f.Kind == KindPath {
		val = resolvePath(baseDir, val.(string))
	}
	c.values[f.Name] = val
	c.given[f.Name] = true
	return nil
}

func resolvePath(baseDir, p string) string {
	if p == "" || filepath.IsAbs(p) || baseDir == "" {
		return p
	}
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	return filepath.Join(baseDir, p)
}

func convert(f Field, v any) (any, error) {
	switch f.Kind {
	case KindString, KindPath:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("expected a %s, got %s", f.Kind, describe(v))
		}
		if len(f.Enum) > 0 && !contains(f.Enum, s) {
			return nil, fmt.Errorf("expected one of %s, got %q", strings.Join(f.Enum, ", "), s)
		}
		return s, nil
	case KindInt:
		var n int64
		switch x := v.(type) {
		case int:
			n = int64(x)
		case int64:
			n = x
		case float64:
			if x != math.Trunc(x) {
				return nil, fmt.Errorf("expected an integer, got %v", x)
			}
			n = int64(x)
		default:
			return nil, fmt.Errorf("expected an integer, got %s", describe(v))
		}
		if err := checkRange(f, float64(n)); err != nil {
			return nil, err
		}
		return n, nil
	case KindFloat:
		var x float64
		switch y := v.(type) {
		case int:
			x = float64(y)
		case int64:
			x = float64(y)
		case float64:
			x = y
		default:
			return nil, fmt.Errorf("expected a number, got %s", describe(v))
		}
		if err := checkRange(f, x); err != nil {
			return nil, err
		}
		return x, nil
	case KindBool:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("expected true or false, got %s", describe(v))
		}
		return b, nil
	case KindDuration:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("expected a duration such as 90s, 36h or 7d, got %s", describe(v))
		}
		d, err := ParseDuration(s)
		if err != nil {
			return nil, err
		}
		return d, nil
	case KindStrings:
		list, ok := v.([]any)
		if !ok {
			if s, isStr := v.(string); isStr {
				return []string{s}, nil
			}
			return nil, fmt.Errorf("expected a list of strings, got %s", describe(v))
		}
		out := make([]string, len(list))
		for i, e := range list {
			s, isStr := e.(string)
			if !isStr {
				return nil, fmt.Errorf("item %d: expected a string, got %s", i, describe(e))
			}
			out[i] = s
		}
		return out, nil
	case KindStringMap:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("expected a mapping of strings, got %s", describe(v))
		}
		out := make(map[string]string, len(m))
		for k, e := range m {
			switch x := e.(type) {
			case string:
				out[k] = x
			case int, int64, float64, bool:
				out[k] = fmt.Sprint(x)
			default:
				return nil, fmt.Errorf("key %q: expected a string, got %s", k, describe(e))
			}
		}
		return out, nil
	case KindMap:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("expected a mapping, got %s", describe(v))
		}
		return m, nil
	}
	return nil, fmt.Errorf("unsupported field kind %d", f.Kind)
}

func checkRange(f Field, x float64) error {
	if f.Min != nil && x < *f.Min || f.Max != nil && x > *f.Max {
		return fmt.Errorf("expected a value from %v to %v, got %v", deref(f.Min), deref(f.Max), x)
	}
	return nil
}

func deref(p *float64) any {
	if p == nil {
		return "any"
	}
	return *p
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return fmt.Sprintf("the string %q", x)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	default:
		return fmt.Sprintf("%v", x)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// suggest names the closest known key, for typos.
func suggest(k string, fields []Field) string {
	best, bestD := "", 3
	for _, f := range fields {
		for _, name := range []string{f.Name, f.Name + "_file"} {
			if name == f.Name+"_file" && !f.Secret {
				continue
			}
			if d := editDistance(k, name); d < bestD {
				best, bestD = name, d
			}
		}
	}
	if best == "" {
		names := make([]string, 0, len(fields))
		for _, f := range fields {
			names = append(names, f.Name)
		}
		if len(names) == 0 {
			return " (this component takes no keys)"
		}
		return " (known keys: " + strings.Join(names, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// ParseDuration parses Go durations plus a "d" (24h) suffix: "7d", "36h", "1d12h".
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	var total time.Duration
	if i := strings.Index(s, "d"); i > 0 {
		days, err := strconv.Atoi(s[:i])
		if err != nil {
			return 0, fmt.Errorf("expected a duration such as 90s, 36h or 7d, got %q", orig)
		}
		total = time.Duration(days) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return total, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("expected a duration such as 90s, 36h or 7d, got %q", orig)
	}
	return total + d, nil
}

// FormatDuration prints d the way ParseDuration reads it.
func FormatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// Ptr returns a pointer to f, for Field.Min and Field.Max.
func Ptr(f float64) *float64 { return &f }
