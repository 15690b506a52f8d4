package policy

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDecodeInput(t *testing.T) {
	in, err := DecodeInput([]byte(`{"abi":1,"now":"2026-11-22T02:00:00Z","pipeline":"p\u00e9","sink":"s","future":{"x":[1,null]},
		"params":{"keep_daily":7,"keep_tag":[["a","b"]],"x":null},
		"snapshots":[{"id":"a\"b","time":"2026-11-21T02:00:11.5+02:00","size":123,"tags":null,"labels":{"host":"h"}},
		             {"id":"c","time":"2026-11-20T02:00:11Z","tags":["t1","\ud83d\ude00"],"extra":true}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if in.Pipeline != "pé" || in.Params["keep_daily"] != 7.0 || len(in.Snapshots) != 2 {
		t.Fatalf("decoded %+v", in)
	}
	s := in.Snapshots[0]
	if s.ID != `a"b` || s.Size != 123 || s.Labels["host"] != "h" || s.Time.Hour() != 2 || s.Time.UTC().Hour() != 0 || s.Time.Nanosecond() != 5e8 {
		t.Fatalf("snapshot %+v", s)
	}
	if in.Snapshots[1].Tags[1] != "😀" {
		t.Fatalf("tags %q", in.Snapshots[1].Tags)
	}
	for _, bad := range []string{
		``, `[]`, `{"abi":2}`, `{"now":"x","abi":1}`, `{"abi":1,"snapshots":[{"time":"2026-01-01T00:00:00Z"}]}`,
		`{"abi":1,"snapshots":[{"id":"a"}]}`, `{"abi":1} x`, `{"abi":1,"params":[1]}`,
		`{"abi":1,"snapshots":[{"id":"a","time":"2026-01-01T00:00:00Z","size":1.5}]}`, strings.Repeat("[", 100),
	} {
		if _, err := DecodeInput([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestEncodeOutput: the hand-written encoder agrees with encoding/json.
func TestEncodeOutput(t *testing.T) {
	o := &Output{ABI: 1, Decisions: []Decision{{ID: "a", Keep: true, Reason: "daily \"x\" \\ \n\t\x01 é"}, {ID: "b"}}}
	var got struct {
		ABI       int `json:"abi"`
		Decisions []struct {
			ID     string `json:"id"`
			Keep   bool   `json:"keep"`
			Reason string `json:"reason"`
		} `json:"decisions"`
	}
	if err := json.Unmarshal(EncodeOutput(o), &got); err != nil {
		t.Fatal(err)
	}
	if got.ABI != 1 || len(got.Decisions) != 2 || got.Decisions[0].Reason != o.Decisions[0].Reason || !got.Decisions[0].Keep {
		t.Fatalf("round trip: %+v", got)
	}
}

func FuzzDecodeInput(f *testing.F) {
	f.Add([]byte(`{"abi":1,"now":"2026-11-22T02:00:00Z","snapshots":[{"id":"a","time":"2026-11-21T02:00:11Z"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := DecodeInput(b)
		if err == nil && in.ABI != 1 {
			t.Fatal("accepted a wrong abi")
		}
	})
}

// TestFastTime: the fast time parser agrees with time.Parse.
func TestFastTime(t *testing.T) {
	d := &decoder{}
	for _, s := range []string{"2026-11-22T02:00:13Z", "2026-11-22T02:00:13.123456789Z", "2026-11-22T02:00:13.5+02:00",
		"2026-03-01T23:30:00-05:00", "2024-02-29T00:00:00Z", "2026-11-22T02:00:13+00:00", "2026-11-22T02:00:13.1234567891Z"} {
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := d.fastTime(s)
		_, wo := want.Zone()
		_, go_ := got.Zone()
		if !ok || !got.Equal(want) || wo != go_ || got.Hour() != want.Hour() {
			t.Errorf("%s: fast %v (%v), time.Parse %v", s, got, ok, want)
		}
	}
	for _, s := range []string{"2026-02-30T00:00:00Z", "2026-11-22 02:00:13Z", "2026-11-22T02:00:13", "2026-13-01T00:00:00Z"} {
		if _, ok := d.fastTime(s); ok {
			t.Errorf("%s: accepted", s)
		}
	}
}

// TestStringsRoundTrip: ids of every length and content, as encoding/json writes them, come
// back unchanged (the word-at-a-time scanner and the slow path agree).
func TestStringsRoundTrip(t *testing.T) {
	alphabet := []string{"a", "Z", "0", "-", "\"", "\\", "\n", "\x01", "é", "😀", "/", " "}
	rng := uint64(1)
	for n := 0; n < 2000; n++ {
		var id strings.Builder
		for k := 0; k < n%45+1; k++ {
			rng = rng*6364136223846793005 + 1442695040888963407
			id.WriteString(alphabet[(rng>>33)%uint64(len(alphabet))])
		}
		b, _ := json.Marshal(map[string]any{"abi": 1, "snapshots": []any{
			map[string]any{"id": id.String(), "time": "2026-11-21T02:00:11Z", "tags": []string{id.String()}},
			map[string]any{"id": "pad-pad-pad-pad-pad-pad-pad-pad-pad", "time": "2026-11-21T02:00:11Z"}}})
		in, err := DecodeInput(b)
		if err != nil {
			t.Fatalf("%q: %v", id.String(), err)
		}
		if in.Snapshots[0].ID != id.String() || in.Snapshots[0].Tags[0] != id.String() {
			t.Fatalf("%q came back as %q", id.String(), in.Snapshots[0].ID)
		}
	}
	// A raw control character is not JSON.
	if _, err := DecodeInput([]byte("{\"abi\":1,\"sink\":\"a\x01b\",\"pipeline\":\"padding padding padding padding\"}")); err == nil {
		t.Fatal("raw control character accepted")
	}
}

func TestIntegers(t *testing.T) {
	for _, n := range []int64{0, 7, -1, 1234, 12345678, 123456789012345678, -987654321, 9223372036854775807} {
		d := &decoder{b: []byte(strconv.FormatInt(n, 10) + ",")}
		got, err := d.integer()
		if err != nil || got != n || d.b[d.i] != ',' {
			t.Errorf("%d: got %d, %v, at %d", n, got, err, d.i)
		}
	}
	for _, bad := range []string{"1.5", "1e3", "x", "99999999999999999999"} {
		d := &decoder{b: []byte(bad)}
		if _, err := d.integer(); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// TestPlain: the word-at-a-time test agrees with a byte loop, wherever the special byte is.
func TestPlain(t *testing.T) {
	naive := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
				return false
			}
		}
		return true
	}
	for n := 0; n <= 40; n++ {
		base := []byte(strings.Repeat("aé~\x7f\xff ", 8)[:n])
		if got, want := plain(string(base)), naive(string(base)); got != want {
			t.Fatalf("plain(%q) = %v, want %v", base, got, want)
		}
		for i := 0; i < n; i++ {
			for _, c := range []byte{'"', '\\', 0, 0x1f, '\n', 0x20, 0x21, 0x5b, 0x5d, 0x80} {
				s := []byte(string(base))
				s[i] = c
				if got, want := plain(string(s)), naive(string(s)); got != want {
					t.Fatalf("plain(%q) = %v, want %v", s, got, want)
				}
			}
		}
	}
}
