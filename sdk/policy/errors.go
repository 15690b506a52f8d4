package policy

import (
	"sort"
	"strconv"
	"strings"
)

// This package builds its messages without fmt: fmt's printer, and the reflection it
// needs, are a tenth of a Go policy module (gfs: 2.99 → 2.68 MB), and the host loads and
// checks every byte of a module again on every run.

// wrapError is fmt.Errorf("msg: %w", err) without fmt.
type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *wrapError) Unwrap() error { return e.err }

func wrap(msg string, err error) error { return &wrapError{msg: msg, err: err} }

// Describe renders a parameter value for a message as fmt's %v does (JSON values: nil,
// bool, float64, string, []any, map[string]any; and Go integers), without importing fmt.
func Describe(v any) string {
	var b strings.Builder
	describe(&b, v)
	return b.String()
}

func describe(b *strings.Builder, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("<nil>")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case float64:
		b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	case int:
		b.WriteString(strconv.Itoa(v))
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case string:
		b.WriteString(v)
	case []string:
		b.WriteByte('[')
		b.WriteString(strings.Join(v, " "))
		b.WriteByte(']')
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(' ')
			}
			describe(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("map[")
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(k)
			b.WriteByte(':')
			describe(b, v[k])
		}
		b.WriteByte(']')
	default:
		b.WriteString("(a value of an unexpected type)")
	}
}
