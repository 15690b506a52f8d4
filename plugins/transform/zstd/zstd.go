// Package zstd is the zstd compression transform (github.com/klauspost/compress/zstd). Its
// output is a standard zstd frame stream: `zstd -d` reads it.
package zstd

import (
	"fmt"
	"io"
	"runtime"
	"strconv"

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
		Doc:  "Compresses with zstd. Levels 1-19 map onto the encoder's speed levels (1: fastest, 3: default, 4-8: better, 9+: best).",
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
}

// New returns a zstd transform at level (1-19); concurrency 0 means one goroutine per CPU.
func New(level, concurrency int) *Transform {
	if concurrency <= 0 {
		concurrency = min(runtime.GOMAXPROCS(0), 8)
	}
	return &Transform{level: level, concurrency: concurrency}
}

// Encode returns a compressing writer into w; Close flushes the last frame and leaves w open.
func (t *Transform) Encode(w io.Writer) (io.WriteCloser, error) {
	enc, err := zstd.NewWriter(w,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(t.level)),
		zstd.WithEncoderConcurrency(t.concurrency),
		zstd.WithWindowSize(min(windowFor(t.level), maxWindow)),
		zstd.WithEncoderCRC(true),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	return enc, nil
}

func windowFor(level int) int {
	if level >= 9 {
		return 16 << 20
	}
	return 8 << 20
}

// Decode returns a decompressing reader of r.
func (t *Transform) Decode(r io.Reader) (io.ReadCloser, error) {
	dec, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(maxWindow), zstd.WithDecoderConcurrency(2))
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
