package policy

import (
	"bytes"
	"errors"
	"math"
	"math/bits"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeInput parses an ABI v1 input document. Unknown keys are ignored, so a newer host
// may add fields without breaking older policies.
func DecodeInput(b []byte) (*Input, error) {
	// One copy of the whole input; every id, tag and label is then a substring of it. Under
	// WebAssembly each small allocation is expensive, and there are tens of thousands.
	d := &decoder{b: b, src: string(b)}
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
					return errors.New("params: expected an object")
				}
				in.Params = m
			}
		case "limits":
			err = d.object(func(k string) error {
				if k == "memory_mib" {
					n, err := d.integer()
					in.MemoryMiB = int(n)
					return err
				}
				_, err := d.value()
				return err
			})
		case "snapshots":
			if in.Snapshots == nil {
				// A snapshot takes at least ~60 bytes of input; counting them exactly would
				// cost a scan of the whole input.
				in.Snapshots = make([]Snapshot, 0, len(b)/60+1)
			}
			err = d.array(func() error {
				in.Snapshots = append(in.Snapshots, Snapshot{})
				if err := d.snapshot(&in.Snapshots[len(in.Snapshots)-1]); err != nil {
					return wrap("snapshots["+strconv.Itoa(len(in.Snapshots)-1)+"]", err)
				}
				return nil
			})
		default:
			_, err = d.value()
		}
		if err != nil {
			return wrap(key, err)
		}
		return nil
	})
	if err == nil {
		d.ws()
		if d.i != len(d.b) {
			err = d.fail("unexpected data after the input object")
		}
	}
	if err != nil {
		return nil, wrap("decode input", err)
	}
	if !seenABI || in.ABI != ABI {
		return nil, errors.New("decode input: abi " + strconv.Itoa(in.ABI) + " is not supported (this policy speaks abi " + strconv.Itoa(ABI) + ")")
	}
	return in, nil
}

// snapshot reads one snapshot object. It is the hot path (once per snapshot), so it walks
// the keys in a plain loop instead of through callbacks.
func (d *decoder) snapshot(s *Snapshot) error {
	if err := d.expect('{'); err != nil {
		return err
	}
	hasTime := false
	if d.peek() == '}' {
		d.i++
	} else {
		for {
			key, err := d.str()
			if err != nil {
				return err
			}
			if err := d.expect(':'); err != nil {
				return err
			}
			// An if chain of short constant comparisons compiles to plain loads; a string
			// switch would call the runtime's (looping) string compare.
			if key == "id" {
				s.ID, err = d.str()
			} else if key == "time" {
				s.Time, err = d.time()
				hasTime = true
			} else if key == "size" {
				s.Size, err = d.integer()
			} else if key == "tags" {
				err = d.tags(s)
			} else if key == "labels" {
				err = d.labels(s)
			} else {
				_, err = d.value()
			}
			if err != nil {
				return wrap(key, err)
			}
			c := d.peek()
			d.i++
			if c == '}' {
				break
			}
			if c != ',' {
				d.i--
				return d.fail("expected ',' or '}' in object")
			}
		}
	}
	if s.ID == "" {
		return errors.New("missing id")
	}
	if !hasTime {
		return errors.New("snapshot " + s.ID + ": missing time")
	}
	return nil
}

func (d *decoder) tags(s *Snapshot) error {
	if d.null() {
		return nil
	}
	if d.literal("[]") {
		return nil
	}
	return d.array(func() error {
		t, err := d.str()
		s.Tags = append(s.Tags, t)
		return err
	})
}

func (d *decoder) labels(s *Snapshot) error {
	if d.null() || d.literal("{}") {
		return nil
	}
	return d.object(func(k string) error {
		v, err := d.str()
		if s.Labels == nil {
			s.Labels = make(map[string]string, 1)
		}
		s.Labels[k] = v
		return err
	})
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
	if plain(s) {
		b = append(b, s...)
		return append(b, '"')
	}
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

// plain reports whether s needs no escaping in JSON. Under a host that enforces timeouts
// every loop iteration calls into the host, so it looks at 8 bytes per iteration (ids and
// reasons are 16-40 bytes: 2-5 iterations instead of one per byte).
func plain(s string) bool {
	n := len(s)
	if n < 8 {
		for i := 0; i < n; i++ {
			if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
				return false
			}
		}
		return true
	}
	for i := 0; ; i += 8 {
		if i > n-8 {
			i = n - 8 // the last word overlaps the one before: fine for a test of every byte
		}
		v := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		xq := v ^ (swarLo * '"')
		xb := v ^ (swarLo * '\\')
		if ((xq-swarLo)&^xq|(xb-swarLo)&^xb|(v-swarLo*0x20)&^v)&swarHi != 0 {
			return false
		}
		if i == n-8 {
			return true
		}
	}
}

// decoder is a small recursive-descent JSON reader over a byte slice.
type decoder struct {
	b     []byte
	src   string // b as one string: unescaped strings are substrings of it, not copies
	i     int
	depth int
	zones map[int]*time.Location
}

const maxDepth = 64

// fail is an error at the current offset.
func (d *decoder) fail(msg string) error {
	return errors.New("offset " + strconv.Itoa(d.i) + ": " + msg)
}

func (d *decoder) ws() {
	// Compact JSON has no whitespace: answer without entering the loop (under a host that
	// enforces timeouts every loop entry costs a call into the host).
	if d.i < len(d.b) && d.b[d.i] > ' ' {
		return
	}
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
			return d.fail("unexpected end of input, expected " + strconv.QuoteRune(rune(c)))
		}
		return d.fail("expected " + strconv.QuoteRune(rune(c)) + ", found " + strconv.QuoteRune(rune(d.b[d.i])))
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
		return d.fail("nested too deeply")
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
			return d.fail("expected ',' or '}' in object")
		}
	}
}

// array calls fn for each element with the decoder positioned at it.
func (d *decoder) array(fn func() error) error {
	if err := d.expect('['); err != nil {
		return err
	}
	if d.depth++; d.depth > maxDepth {
		return d.fail("nested too deeply")
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
			return d.fail("expected ',' or ']' in array")
		}
	}
}

func (d *decoder) str() (string, error) {
	if err := d.expect('"'); err != nil {
		return "", err
	}
	start := d.i
	// Under a host that enforces timeouts every loop iteration calls into the host, so short
	// strings (ids, keys, times) are scanned 8 bytes at a time without a loop.
	if len(d.b)-start >= 32 {
		if end, ok, bad := d.scanWord(start); ok || bad {
			return d.finishStr(start, end, bad)
		}
		if end, ok, bad := d.scanWord(start + 8); ok || bad {
			return d.finishStr(start, end, bad)
		}
		if end, ok, bad := d.scanWord(start + 16); ok || bad {
			return d.finishStr(start, end, bad)
		}
		if end, ok, bad := d.scanWord(start + 24); ok || bad {
			return d.finishStr(start, end, bad)
		}
	}
	// Longer strings: bytes.IndexByte works a word at a time.
	end := bytes.IndexByte(d.b[start:], '"')
	if end < 0 {
		return "", d.fail("unterminated string")
	}
	if bytes.IndexByte(d.b[start:start+end], '\\') >= 0 {
		return d.strSlow(start)
	}
	d.i = start + end + 1
	if d.src != "" {
		return d.src[start : start+end], nil
	}
	return string(d.b[start : start+end]), nil
}

const (
	swarLo = 0x0101010101010101
	swarHi = 0x8080808080808080
)

// scanWord looks at the 8 bytes at off for the closing quote of a string. ok: found at end
// (an index into d.b) with no backslash or control character before it; bad: a backslash
// or control character comes first (the caller takes the slow path). The classic
// "has zero byte" test is exact for the lowest matching byte, which is all we use.
func (d *decoder) scanWord(off int) (end int, ok, bad bool) {
	b := d.b[off : off+8]
	v := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
	xq := v ^ (swarLo * '"')
	quote := (xq - swarLo) &^ xq & swarHi
	xb := v ^ (swarLo * '\\')
	special := ((xb - swarLo) &^ xb & swarHi) | ((v - swarLo*0x20) &^ v & swarHi)
	if quote == 0 {
		return 0, false, special != 0
	}
	q := bits.TrailingZeros64(quote)
	if special != 0 && bits.TrailingZeros64(special) < q {
		return 0, false, true
	}
	return off + q>>3, true, false
}

func (d *decoder) finishStr(start, end int, bad bool) (string, error) {
	if bad {
		d.i = start
		return d.strSlow(start)
	}
	d.i = end + 1
	if d.src != "" {
		return d.src[start:end], nil
	}
	return string(d.b[start:end]), nil
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
			return "", d.fail("control character in string")
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
				return "", d.fail("invalid \\u escape")
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
			return "", d.fail("invalid escape \\" + string(rune(e)))
		}
	}
	return "", d.fail("unterminated string")
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
		return "", d.fail("expected a number")
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
		return 0, d.fail("invalid number " + strconv.Quote(s))
	}
	return f, nil
}

func (d *decoder) integer() (int64, error) {
	d.ws()
	// Fast path: up to 18 plain digits, no allocation.
	j, neg := d.i, false
	if j < len(d.b) && d.b[j] == '-' {
		neg = true
		j++
	}
	n, k := d.digits4(0, j)
	if k-j == 4 {
		if n, k = d.digits4(n, k); k-j == 8 {
			if n, k = d.digits4(n, k); k-j == 12 {
				if n, k = d.digits4(n, k); k-j == 16 {
					n, k = d.digit(n, k)
					n, k = d.digit(n, k)
				}
			}
		}
	}
	if k > j && (k == len(d.b) || (d.b[k] != '.' && d.b[k] != 'e' && d.b[k] != 'E' && (d.b[k] < '0' || d.b[k] > '9'))) {
		d.i = k
		if neg {
			n = -n
		}
		return n, nil
	}
	s, err := d.numberText()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, d.fail("expected an integer, found " + strconv.Quote(s))
	}
	return v, nil
}

// digit and digits4 read decimal digits without a loop (see scanWord for why).
func (d *decoder) digit(n int64, k int) (int64, int) {
	if k < len(d.b) && d.b[k] >= '0' && d.b[k] <= '9' {
		return n*10 + int64(d.b[k]-'0'), k + 1
	}
	return n, k
}

func (d *decoder) digits4(n int64, k int) (int64, int) {
	k0 := k
	if n, k = d.digit(n, k); k == k0 {
		return n, k
	}
	if n, k = d.digit(n, k); k == k0+1 {
		return n, k
	}
	if n, k = d.digit(n, k); k == k0+2 {
		return n, k
	}
	return d.digit(n, k)
}

func (d *decoder) time() (time.Time, error) {
	s, err := d.str()
	if err != nil {
		return time.Time{}, err
	}
	if t, ok := d.fastTime(s); ok {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("expected an RFC 3339 time, found " + strconv.Quote(s))
	}
	return t, nil
}

// fastTime parses the common forms 2006-01-02T15:04:05[.frac](Z|+hh:mm|-hh:mm) without
// loops over a layout; anything else falls back to time.Parse.
func (d *decoder) fastTime(s string) (time.Time, bool) {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	// Unrolled digit pairs: no loops on the hot path.
	num := func(i int) (int, bool) {
		a, b := s[i]-'0', s[i+1]-'0'
		return int(a)*10 + int(b), a <= 9 && b <= 9
	}
	y1, ok1 := num(0)
	y2, ok7 := num(2)
	year := y1*100 + y2
	ok1 = ok1 && ok7
	month, ok2 := num(5)
	day, ok3 := num(8)
	hour, ok4 := num(11)
	minute, ok5 := num(14)
	sec, ok6 := num(17)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	i, nsec := 19, 0
	if s[i] == '.' {
		i++
		digits := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if digits < 9 {
				nsec = nsec*10 + int(s[i]-'0')
				digits++
			}
			i++
		}
		if digits == 0 {
			return time.Time{}, false
		}
		for ; digits < 9; digits++ {
			nsec *= 10
		}
	}
	var loc *time.Location
	switch rest := s[i:]; {
	case rest == "Z" || rest == "z":
		loc = time.UTC
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := num(i + 1)
		om, ok2 := num(i + 4)
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}, false
		}
		off := oh*3600 + om*60
		if rest[0] == '-' {
			off = -off
		}
		loc = d.zone(off)
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	if t.Day() != day { // February 30th and the like
		return time.Time{}, false
	}
	return t, true
}

// zone returns a fixed zone for an offset, one per distinct offset.
func (d *decoder) zone(off int) *time.Location {
	if off == 0 {
		return time.UTC
	}
	if d.zones == nil {
		d.zones = map[int]*time.Location{}
	}
	if z, ok := d.zones[off]; ok {
		return z
	}
	z := time.FixedZone("", off)
	d.zones[off] = z
	return z
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
			err = d.fail("number out of range")
		}
		return f, err
	case d.literal("true"):
		return true, nil
	case d.literal("false"):
		return false, nil
	case d.null():
		return nil, nil
	case d.i >= len(d.b):
		return nil, d.fail("unexpected end of input")
	default:
		return nil, d.fail("unexpected character " + strconv.QuoteRune(rune(c)))
	}
}
