package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nightjar-backup/nightjar/sdk/policy"
)

// TestDescribeIsFmt: Describe renders JSON values as fmt's %v does.
func TestDescribeIsFmt(t *testing.T) {
	for _, v := range []any{nil, true, 7.0, 1.5, -0.25, 1e21, 1e-7, "x y", []any{}, []any{"a", 2.0, []any{true}},
		map[string]any{}, map[string]any{"b": 1.0, "a": []any{"x"}, "c": map[string]any{"d": nil}}, 3, int64(-4), []string{"p", "q"}} {
		if got, want := policy.Describe(v), fmt.Sprint(v); got != want {
			t.Errorf("Describe(%#v) = %q, fmt gives %q", v, got, want)
		}
	}
}

// TestDecodeErrors: the decoder's messages name the offset, the key and what was found.
func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"abi":1,"snapshots":[{"id":"a","time":"noon"}]}`, `decode input: snapshots: snapshots[0]: time: expected an RFC 3339 time, found "noon"`},
		{`{"abi":1,"snapshots":[{"id":"a","size":1.5}]}`, `decode input: snapshots: snapshots[0]: size: offset 42: expected an integer, found "1.5"`},
		{`{"abi":1,"snapshots":[{"time":"2026-01-02T03:04:05Z"}]}`, `decode input: snapshots: snapshots[0]: missing id`},
		{`{"abi":1,"sink":"\q"}`, `decode input: sink: offset 19: invalid escape \q`},
		{`{"abi":1,"params":{"a":}}`, `decode input: params: offset 23: unexpected character '}'`},
		{`{"abi":1 x`, `decode input: offset 9: expected ',' or '}' in object`},
		{`{"abi":2}`, `decode input: abi 2 is not supported (this policy speaks abi 1)`},
		{`{"abi":1} x`, `decode input: offset 10: unexpected data after the input object`},
	} {
		_, err := policy.DecodeInput([]byte(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.in, err, tc.want)
		}
	}
	p := policy.NewParams(map[string]any{"n": []any{1.0}, "s": "x", "b": 2.0})
	for _, tc := range []struct {
		err  error
		want string
	}{
		{second(p.Int("n", 0)), "param n: expected an integer, got [1]"},
		{second(p.Int("s", 0)), `param s: expected an integer, got "x"`},
		{second(p.Bool("b", false)), "param b: expected true or false, got 2"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("got %v, want %s", tc.err, tc.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }
