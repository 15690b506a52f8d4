package policy

import (
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeInput parses an ABI v1 input document. Unknown keys are ignored, so a newer host
// may add fields without breaking older policies.
func DecodeInput(b []byte) (*Input, error) {
	d := &decoder{b: b}
	in := &Input{Params: map[string]any{}}
	seenABI := false
	err := d.object(func(key string) error {
		var err error
		switch key {
		case "abi":
			var n int64
			n, err = d.integer()
			in.ABI, seenABI = int(n), true
		case "now":
			in.Now, err = d.time()
		case "pipeline":
			in.Pipeline, err = d.str()
		case "sink":
			in.Sink, err = d.str()
		case "params":
			var v any
			if v, err = d.value(); err == nil && v != nil {
				m, ok := v.(map[string]any)
				if !ok {
					return fmt.Errorf("params: expected an object")
				}
				in.Params = m
			}
		case "snapshots":
			err = d.array(func() error {
				s, err := d.snapshot()
				if err != nil {
					return fmt.Errorf("snapshots[%d]: %w", len(in.Snapshots), err)
				}
				in.Snapshots = append(in.Snapshots, s)
				return nil
			})
		default:
			_, err = d.value()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err == nil {
		d.ws()
		if d.i != len(d.b) {
			err = d.errorf("unexpected data after the input object")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("decode input: %w", err)
	}
	if !seenABI || in.ABI != ABI {
		return nil, fmt.Errorf("decode input: abi %d is not supported (this policy speaks abi %d)", in.ABI, ABI)
	}
	return in, nil
}

func (d *decoder) snapshot() (Snapshot, error) {
	var s Snapshot
	var hasTime bool
	err := d.object(func(key string) error {
		var err error
		switch key {
		case "id":
			s.ID, err = d.str()
		case "time":
			s.Time, err = d.time()
			hasTime = true
		case "size":
			s.Size, err = d.integer()
		case "tags":
			if d.null() {
				return nil
			}
			err = d.array(func() error {
				t, err := d.str()
				s.Tags = append(s.Tags, t)
				return err
			})
		case "labels":
			if d.null() {
				return nil
			}
			s.Labels = map[string]string{}
			err = d.object(func(k string) error {
				v, err := d.str()
				s.Labels[k] = v
				return err
			})
		default:
			_, err = d.value()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err == nil && s.ID == "" {
		err = fmt.Errorf("missing id")
	}
	if err == nil && !hasTime {
		err = fmt.Errorf("snapshot %s: missing time", s.ID)
	}
	return s, err
}

// EncodeOutput renders an output document, one line, ending in a newline.
func EncodeOutput(o *Output) []byte {
	b := make([]byte, 0, 32+len(o.Decisions)*80)
	b = append(b, `{"abi":`...)
	b = strconv.AppendInt(b, int64(o.ABI), 10)
	b = append(b, `,"decisions":[`...)
	for i, dc := range o.Decisions {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendString(b, dc.ID)
		b = append(b, `,"keep":`...)
		b = strconv.AppendBool(b, dc.Keep)
		b = append(b, `,"reason":`...)
		b = appendString(b, dc.Reason)
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

const hexDigits = "0123456789abcdef"

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\t':
			b = append(b, '\\', 't')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// decoder is a small recursive-descent JSON reader over a byte slice.
type decoder struct {
	b     []byte
	i     int
	depth int
}

const maxDepth = 64

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", d.i, fmt.Sprintf(format, args...))
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *decoder) expect(c byte) error {
	if d.peek() != c {
		if d.i >= len(d.b) {
			return d.errorf("unexpected end of input, expected %q", c)
		}
		return d.errorf("expected %q, found %q", c, d.b[d.i])
	}
	d.i++
	return nil
}

func (d *decoder) literal(lit string) bool {
	d.ws()
	if len(d.b)-d.i >= len(lit) && string(d.b[d.i:d.i+len(lit)]) == lit {
		d.i += len(lit)
		return true
	}
	return false
}

func (d *decoder) null() bool { return d.literal("null") }

// object calls fn for each key with the decoder positioned at the key's value.
func (d *decoder) object(fn func(key string) error) error {
	if err := d.expect('{'); err != nil {
		return err
	}
	if d.depth++; d.depth > maxDepth {
		return d.errorf("nested too deeply")
	}
	defer func() { d.depth-- }()
	if d.peek() == '}' {
		d.i++
		return nil
	}
	for {
		k, err := d.str()
		if err != nil {
			return err
		}
		if err := d.expect(':'); err != nil {
			return err
		}
		if err := fn(k); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return nil
		default:
			return d.errorf("expected ',' or '}' in object")
		}
	}
}

// array calls fn for each element with the decoder positioned at it.
func (d *decoder) array(fn func() error) error {
	if err := d.expect('['); err != nil {
		return err
	}
	if d.depth++; d.depth > maxDepth {
		return d.errorf("nested too deeply")
	}
	defer func() { d.depth-- }()
	if d.peek() == ']' {
		d.i++
		return nil
	}
	for {
		if err := fn(); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			return nil
		default:
			return d.errorf("expected ',' or ']' in array")
		}
	}
}

func (d *decoder) str() (string, error) {
	if err := d.expect('"'); err != nil {
		return "", err
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := string(d.b[start:d.i])
			d.i++
			return s, nil
		case c == '\\':
			return d.strSlow(start)
		case c < 0x20:
			return "", d.errorf("control character in string")
		}
		d.i++
	}
	return "", d.errorf("unterminated string")
}

func (d *decoder) strSlow(start int) (string, error) {
	out := append([]byte(nil), d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return string(out), nil
		case c < 0x20:
			return "", d.errorf("control character in string")
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		d.i++
		if d.i >= len(d.b) {
			break
		}
		e := d.b[d.i]
		d.i++
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", d.errorf("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if d.i+1 < len(d.b) && d.b[d.i] == '\\' && d.b[d.i+1] == 'u' {
					d.i += 2
					if x, ok := d.hex4(); ok {
						r2 = x
					}
				}
				r = utf16.DecodeRune(r, r2)
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", d.errorf("invalid escape \\%c", e)
		}
	}
	return "", d.errorf("unterminated string")
}

func (d *decoder) hex4() (rune, bool) {
	if len(d.b)-d.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range d.b[d.i : d.i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	d.i += 4
	return r, true
}

func (d *decoder) numberText() (string, error) {
	d.ws()
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			d.i++
			continue
		}
		break
	}
	if start == d.i {
		return "", d.errorf("expected a number")
	}
	return string(d.b[start:d.i]), nil
}

func (d *decoder) number() (float64, error) {
	s, err := d.numberText()
	if err != nil {
		return 0, err
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, d.errorf("invalid number %q", s)
	}
	return f, nil
}

func (d *decoder) integer() (int64, error) {
	s, err := d.numberText()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, d.errorf("expected an integer, found %q", s)
	}
	return n, nil
}

func (d *decoder) time() (time.Time, error) {
	s, err := d.str()
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("expected an RFC 3339 time, found %q", s)
	}
	return t, nil
}

// value reads any JSON value.
func (d *decoder) value() (any, error) {
	switch c := d.peek(); {
	case c == '{':
		m := map[string]any{}
		err := d.object(func(k string) error {
			v, err := d.value()
			m[k] = v
			return err
		})
		return m, err
	case c == '[':
		l := []any{}
		err := d.array(func() error {
			v, err := d.value()
			l = append(l, v)
			return err
		})
		return l, err
	case c == '"':
		return d.str()
	case c == '-' || (c >= '0' && c <= '9'):
		f, err := d.number()
		if err == nil && (math.IsInf(f, 0) || math.IsNaN(f)) {
			err = d.errorf("number out of range")
		}
		return f, err
	case d.literal("true"):
		return true, nil
	case d.literal("false"):
		return false, nil
	case d.null():
		return nil, nil
	case d.i >= len(d.b):
		return nil, d.errorf("unexpected end of input")
	default:
		return nil, d.errorf("unexpected character %q", c)
	}
}
