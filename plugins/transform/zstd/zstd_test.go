package zstd

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os/exec"
	"testing"

	"github.com/nightjar-backup/nightjar/core/testenv"
)

func testData(n int) []byte {
	b := make([]byte, n)
	rand.Read(b[:n/2]) // half random, half text
	copy(b[n/2:], bytes.Repeat([]byte("compressible line of text\n"), n/2/26+1))
	return b
}

func TestRoundTripAndStockZstd(t *testing.T) {
	data := testData(3 << 20)
	for _, level := range []int{1, 3, 9, 19} {
		tr := New(level, 0)
		var enc bytes.Buffer
		w, err := tr.Encode(&enc)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(data); i += 100000 {
			w.Write(data[i:min(i+100000, len(data))])
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := tr.Decode(bytes.NewReader(enc.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("level %d: round trip differs (%v)", level, err)
		}
		// Stock zstd reads it (and checks the frames' checksums where the encoder writes them:
		// the pure-Go one does, the C library's frames carry none).
		cmd := exec.Command(testenv.Tool(t, "zstd"), "-d", "-c", "-q")
		cmd.Env = testenv.Env(t)
		cmd.Stdin = bytes.NewReader(enc.Bytes())
		out, err := cmd.Output()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("level %d: stock zstd -d: %v", level, err)
		}
		if d := tr.Descriptor(); d["type"] != "zstd" || d["level"] == "" {
			t.Errorf("descriptor %v", d)
		}
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	r, err := New(3, 0).Decode(bytes.NewReader([]byte("not zstd at all")))
	if err == nil {
		_, err = io.ReadAll(r)
	}
	if err == nil {
		t.Fatal("garbage decoded without error")
	}
}

func BenchmarkEncode(b *testing.B) {
	data := testData(32 << 20)
	for _, level := range []int{1, 3} {
		b.Run("level"+string(rune('0'+level)), func(b *testing.B) {
			tr := New(level, 0)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				w, _ := tr.Encode(io.Discard)
				for i := 0; i < len(data); i += 1 << 20 {
					w.Write(data[i : i+1<<20])
				}
				w.Close()
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	data := testData(32 << 20)
	var enc bytes.Buffer
	w, _ := New(3, 0).Encode(&enc)
	w.Write(data)
	w.Close()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r, _ := New(3, 0).Decode(bytes.NewReader(enc.Bytes()))
		io.Copy(io.Discard, r)
		r.Close()
	}
}

func TestParallelEdgeCases(t *testing.T) {
	for _, tc := range []struct {
		name        string
		size, conc  int
		writeChunks int
	}{
		{"empty", 0, 4, 1},
		{"one byte", 1, 4, 1},
		{"exactly one chunk", 4 << 20, 2, 1 << 20},
		{"many chunks, odd writes", 17<<20 + 5, 3, 333333},
		{"one compressor", 5 << 20, 1, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := testData(tc.size)
			var enc bytes.Buffer
			w, err := New(3, tc.conc).Encode(&enc)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(data); i += tc.writeChunks {
				w.Write(data[i:min(i+tc.writeChunks, len(data))])
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(testenv.Tool(t, "zstd"), "-d", "-c", "-q")
			cmd.Env = testenv.Env(t)
			cmd.Stdin = bytes.NewReader(enc.Bytes())
			out, err := cmd.Output()
			if err != nil || !bytes.Equal(out, data) {
				t.Fatalf("stock zstd -d: %v (%d bytes, want %d)", err, len(out), len(data))
			}
			r, _ := New(3, 0).Decode(bytes.NewReader(enc.Bytes()))
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("decode: %v", err)
			}
		})
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.ErrClosedPipe
	}
	f.n--
	return len(p), nil
}

func TestParallelWriteErrorIsReturned(t *testing.T) {
	w, _ := New(3, 2).Encode(&failWriter{n: 1})
	data := testData(64 << 20)
	var err error
	for i := 0; i < len(data) && err == nil; i += 1 << 20 {
		_, err = w.Write(data[i : i+1<<20])
	}
	if cerr := w.Close(); cerr != io.ErrClosedPipe || (err != nil && err != io.ErrClosedPipe) {
		t.Fatalf("write error not reported: write %v, close %v", err, cerr)
	}
}

// The level reaches the encoder: on text, level 19 stores less than level 1 (in both
// builds; the pure-Go one maps them onto its fastest and its best speed).
func TestLevelsReachTheEncoder(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	var text bytes.Buffer
	for text.Len() < 2<<20 {
		fmt.Fprintf(&text, `{"id":%d,"user":"user%04d","msg":"request %x served in %d ms"}`+"\n",
			text.Len(), rng.IntN(5000), rng.Uint32(), rng.IntN(900))
	}
	size := func(level int) int {
		var enc bytes.Buffer
		w, err := New(level, 2).Encode(&enc)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(text.Bytes())
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return enc.Len()
	}
	if fast, best := size(1), size(19); best >= fast {
		t.Fatalf("%s: level 19 stored %d bytes, level 1 %d: the level is not used", EncoderName, best, fast)
	}
}

// A closed writer's compressors (encoders and buffers) serve the next Encode: a C context
// lives outside Go's heap, and a new set per artifact would wait for the collector.
func TestCompressorsAreReused(t *testing.T) {
	tr := New(3, 2)
	var first *compressors
	for i, size := range []int{1 << 20, 0, 9 << 20, 4 << 20} {
		var enc bytes.Buffer
		w, err := tr.Encode(&enc)
		if err != nil {
			t.Fatal(err)
		}
		if len(tr.idle) != 0 {
			t.Fatalf("round %d: Encode left %d idle sets", i, len(tr.idle))
		}
		data := testData(size)
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil { // a second Close gives nothing back twice
			t.Fatal(err)
		}
		if len(tr.idle) != 1 {
			t.Fatalf("round %d: %d idle sets after Close, want 1", i, len(tr.idle))
		}
		c := tr.idle[0]
		if first == nil {
			first = c
		} else if c != first {
			t.Fatalf("round %d: a new set of compressors, not the first one again", i)
		}
		if len(c.free) != cap(c.free) {
			t.Fatalf("round %d: %d of %d buffers back after Close", i, len(c.free), cap(c.free))
		}
		r, _ := tr.Decode(bytes.NewReader(enc.Bytes()))
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round %d: round trip differs (%v)", i, err)
		}
	}
}
