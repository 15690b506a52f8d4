// Package zstd is the zstd compression transform. It compresses with zstd's C library
// when built with cgo (the default where a C compiler is found), else with the pure-Go
// encoder of github.com/klauspost/compress, and decodes with the latter. Its output is a
// standard zstd frame stream either way: `zstd -d` reads it.
package zstd

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/nightjar-backup/nightjar/core"
)

// maxWindow bounds the decoder's memory; our encoder never uses a larger window.
const maxWindow = 1 << 27

// Register adds the zstd transform to r.
func Register(r *core.Registry) {
	lo, hi := core.Range(1, 19)
	r.AddTransform(core.TransformPlugin{
		Type: "zstd",
		Doc:  "Compresses with zstd, in parallel frames. Built with cgo (the default where a C compiler is found) it uses zstd's C library and its levels, as `zstd -N`; built without, a pure-Go encoder that maps levels onto four speeds (1-2, 3-5, 6-9, 10-19). `nightjar version` says which. Levels above 9 are much slower and hold more memory (level 19: about 2 MB/s a core and 157 MiB).",
		Fields: []core.Field{
			{Name: "level", Kind: core.KindInt, Default: int64(3), Min: lo, Max: hi, Doc: "Compression level, as zstd's -1..-19."},
			{Name: "concurrency", Kind: core.KindInt, Default: int64(0), Min: core.Ptr(0), Max: core.Ptr(64), Doc: "Encoder goroutines; 0 means one per CPU (at most 8)."},
		},
		New: func(c *core.Component, _ core.Env) (core.Transform, error) {
			return New(int(c.Int("level")), int(c.Int("concurrency"))), nil
		},
		FromDescriptor: func(desc map[string]string, _ core.Env) (core.Transform, error) {
			level, err := strconv.Atoi(desc["level"])
			if err != nil {
				level = 3
			}
			return New(level, 0), nil
		},
	})
}

// Transform compresses with zstd.
type Transform struct {
	level       int
	concurrency int

	mu sync.Mutex
	// idle holds the compressors of closed writers for the next Encode: their buffers
	// (32 MiB at level 3, 128 MiB at 9 and above) and C contexts (outside Go's heap,
	// freed only by a cleanup after a collection; at level 19 one source's run peaked
	// 17 MiB above the pure-Go build's). With a new set per artifact, a pipeline of three
	// sources at level 19 peaked at 176-237 MiB RSS, one source at 76-87 MiB; with the set
	// reused, three sources peak at 96-98 MiB.
	idle []*compressors
}

// New returns a zstd transform at level (1-19); concurrency 0 means one goroutine per CPU.
func New(level, concurrency int) *Transform {
	if concurrency <= 0 {
		concurrency = min(runtime.GOMAXPROCS(0), 8)
	}
	return &Transform{level: level, concurrency: concurrency}
}

// jobMemory bounds the chunks (input and output) that parallel compression holds at once,
// so memory stays flat whatever the artifact's size.
const jobMemory = 48 << 20

// Encode returns a compressing writer into w; Close flushes the last frame and leaves w open.
// The input is compressed in chunks on concurrency goroutines, each chunk one zstd frame
// (see parallelWriter), like `zstd -T0`.
func (t *Transform) Encode(w io.Writer) (io.WriteCloser, error) {
	c, err := t.compressors()
	if err != nil {
		return nil, err
	}
	p := newParallelWriter(w, c)
	p.release = t.putCompressors
	return p, nil
}

// compressors returns an idle set of compressors, or a new one.
func (t *Transform) compressors() (*compressors, error) {
	t.mu.Lock()
	if n := len(t.idle); n > 0 {
		c := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		return c, nil
	}
	t.mu.Unlock()
	encs, err := newFrameEncoders(t.level, t.concurrency)
	if err != nil {
		return nil, err
	}
	chunk := max(4<<20, 2*windowFor(t.level))
	// One chunk per compressor plus one filling and one being written. Two per compressor
	// were no faster (tree backups of 1 GiB, alternating runs) and held 16 MiB more of the
	// heap, whose soft limit a large folder listing then filled (memlimit.go in
	// cmd/nightjar). Bounded by jobMemory, but never fewer than two chunks: at levels 9
	// and above (chunks of 32 MiB) that is 128 MiB.
	inflight := max(2, min(t.concurrency+2, jobMemory/(2*chunk)))
	return newCompressors(encs, chunk, inflight), nil
}

// putCompressors keeps a closed writer's compressors for the next Encode.
func (t *Transform) putCompressors(c *compressors) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.idle = append(t.idle, c)
}

// windowFor follows the zstd command's windows for large inputs: 2 MiB at levels 1-3
// (windowLog 21), 8 MiB up to level 8, 16 MiB above.
func windowFor(level int) int {
	switch {
	case level >= 9:
		return 16 << 20
	case level >= 4:
		return 8 << 20
	default:
		return 2 << 20
	}
}

// Decode returns a decompressing reader of r. It decodes on the reading goroutine
// (concurrency 1): the library's concurrent stream mode pipelines one stream's blocks
// across goroutines, which cost ~40% more CPU and was no faster on 2 cores (~100 vs ~70 ms
// of CPU for 77 MiB of frames, like `zstd -d`'s ~110 ms), while the rest of a restore
// (decryption, hashing, writing files) keeps the other cores busy anyway.
func (t *Transform) Decode(r io.Reader) (io.ReadCloser, error) {
	dec, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(maxWindow), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(false))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	return decoder{dec}, nil
}

type decoder struct{ *zstd.Decoder }

func (d decoder) Close() error { d.Decoder.Close(); return nil }

func (t *Transform) Ext() string { return ".zst" }

func (t *Transform) Descriptor() map[string]string {
	return map[string]string{"type": "zstd", "level": strconv.Itoa(t.level)}
}
