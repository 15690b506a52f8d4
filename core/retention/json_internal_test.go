package retention

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"
)

// marshalInput is what Encode must give: the input with its defaults, through json.Marshal.
func marshalInput(in *Input) ([]byte, error) {
	c := *in
	c.ABI = ABI
	if c.Params == nil {
		c.Params = map[string]any{}
	}
	c.Snapshots = make([]Snapshot, len(in.Snapshots))
	for i, s := range in.Snapshots {
		if s.Tags == nil {
			s.Tags = []string{}
		}
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		c.Snapshots[i] = s
	}
	return json.Marshal(&c)
}

func TestEncodeIsJSONMarshal(t *testing.T) {
	utc := time.Date(2026, 12, 6, 3, 4, 5, 600, time.UTC)
	for name, in := range map[string]*Input{
		"empty": {},
		"plain": {Now: utc, Pipeline: "nightly", Sink: "local", Params: map[string]any{"keep_daily": 7.0, "keep_within": "2d"},
			Snapshots: []Snapshot{{ID: "20261206T030405Z-a1b2c3", Time: utc, Size: 1 << 40, Tags: []string{"a", "b"}},
				{ID: "20261205T030405Z-a1b2c4", Time: utc.Add(-24 * time.Hour), Labels: map[string]string{"z": "1", "a": "2"}}},
			Limits: &InputLimits{MemoryMiB: 64, TimeoutMS: 5000}},
		"escapes": {Now: utc.In(time.FixedZone("", 3600)), Pipeline: "a\"b\\c\n<&>", Sink: "é\u2028\x00\xff",
			Snapshots: []Snapshot{{ID: "x</script>", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(-1, 0, 0),
				Tags: []string{"\t"}, Labels: map[string]string{"k\"": "v\x7f"}}}},
		"zero time": {Snapshots: []Snapshot{{ID: "a", Size: -1, Tags: []string{}}}},
	} {
		got, err := in.Encode()
		want, wantErr := marshalInput(in)
		if err != nil || wantErr != nil || !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s (%v)\nwant %s (%v)", name, got, err, want, wantErr)
		}
	}
	bad := &Input{Now: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := bad.Encode(); err == nil {
		t.Error("year 10000: no error")
	}
}

// decodeOutput is how encoding/json reads an output, as ParseOutput does.
func decodeOutput(b []byte) (Output, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var out Output
	if err := dec.Decode(&out); err != nil {
		return out, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return out, errors.New("data after")
	}
	return out, nil
}

// TestScanOutput: where the fast reader takes a document, it reads what encoding/json
// reads; the plain documents policies write are taken.
func TestScanOutput(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		fast bool // the fast reader must take it
	}{
		{`{"abi":1,"decisions":[{"id":"a","keep":true,"reason":"last 3"},{"id":"b","keep":false,"reason":"x"}]}` + "\n", true},
		{" { \"decisions\" : [ ] ,\r\n\t\"abi\" : 1 } ", true},
		{`{"abi":0}`, true},
		{`{}`, true},
		{`{"abi":1,"decisions":[{}]}`, true},
		{`{"abi":1,"decisions":[{"reason":"r","keep":false,"id":"a"}]}`, true},
		{`{"abi":123456789,"decisions":[]}`, true},
		{`{"abi":1234567890,"decisions":[]}`, false},
		{`{"abi":01,"decisions":[]}`, false},
		{`{"abi":1.0,"decisions":[]}`, false},
		{`{"abi":1e0,"decisions":[]}`, false},
		{`{"abi":-1,"decisions":[]}`, false},
		{`{"abi":1,"decisions":null}`, false},
		{`{"abi":1,"decisions":[{"id":"a\"b","keep":true}]}`, false},
		{`{"abi":1,"decisions":[{"id":"é","keep":true}]}`, false},
		{`{"abi":1,"decisions":[{"id":"a\u0062","keep":true}]}`, false},
		{`{"ABI":1,"decisions":[{"ID":"a","Keep":true}]}`, false},
		{`{"abi":1,"abi":2}`, false},
		{`{"abi":1,"decisions":[{"id":"a","id":"b"}]}`, false},
		{`{"abi":1,"decisions":[{"id":"a","keep":null}]}`, false},
		{`{"abi":1,"decisions":[{"id":"a","keep":1}]}`, false},
		{`{"abi":1,"decisions":[{"id":"a","kep":true}]}`, false},
		{`{"abi":1,"decisions":[{"id":"a","keep":true},]}`, false},
		{`{"abi":1,"decisions":[{"id":"a","keep":true}]} {}`, false},
		{`{"abi":1,"decisions":[{"id":"a","keep":true}]`, false},
		{`{"abi":1,"decisions":[{"id":"a","keep":tru}]}`, false},
		{`{"abi":1,"decisions":[{"id":"a"`, false},
		{`{"abi":1,"x":2}`, false},
		{`[]`, false},
		{``, false},
	} {
		got, ok := scanOutput([]byte(tc.doc))
		if tc.fast && !ok {
			t.Errorf("%s: the fast reader did not take it", tc.doc)
		}
		if !ok {
			continue
		}
		want, err := decodeOutput([]byte(tc.doc))
		if err != nil {
			t.Errorf("%s: the fast reader took what encoding/json refuses (%v)", tc.doc, err)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: fast %+v, encoding/json %+v", tc.doc, got, want)
		}
	}
}

// FuzzScanOutput: whatever the fast reader takes, encoding/json reads the same
// (go test -fuzz FuzzScanOutput ./core/retention/).
func FuzzScanOutput(f *testing.F) {
	f.Add(`{"abi":1,"decisions":[{"id":"a","keep":true,"reason":"x"},{"id":"b","keep":false}]}`)
	f.Add(` {"decisions":[ {} ], "abi": 0 }`)
	f.Fuzz(func(t *testing.T, doc string) {
		got, ok := scanOutput([]byte(doc))
		if !ok {
			return
		}
		want, err := decodeOutput([]byte(doc))
		if err != nil {
			t.Fatalf("%q: the fast reader took what encoding/json refuses (%v)", doc, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: fast %+v, encoding/json %+v", doc, got, want)
		}
	})
}
