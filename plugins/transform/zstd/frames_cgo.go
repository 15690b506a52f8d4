//go:build cgo

package zstd

import dd "github.com/DataDog/zstd"

// EncoderName says which zstd encoder this build compresses with (nightjar version).
const EncoderName = "C libzstd (cgo, github.com/DataDog/zstd)"

// newFrameEncoders returns n encoders of zstd's reference C library (github.com/DataDog/zstd
// builds its bundled source), one per compressing goroutine: a C context is not safe for
// concurrent use. Levels are zstd's own, as `zstd -N`; the library picks the window from
// the level and the chunk's size (2 MiB at level 3, like `zstd -3` on large inputs).
//
// Why C when cgo is there: zstd is most of a backup's CPU, and at level 3 the C library
// compresses the JSON lines of bench/10-tree.sh at about 290 MB/s a core, the pure-Go
// encoder at about 220 MB/s. A backup of a tree of real files took 10% less time; one of
// a file of half random bytes none (docs/ARCHITECTURE.md). Its frames carry no checksum of
// their own (the manifest's sha256 of the stored and the raw bytes, and age's
// authentication, already check every byte).
func newFrameEncoders(level, n int) ([]frameEncoder, error) {
	encs := make([]frameEncoder, n)
	for i := range encs {
		encs[i] = cEncoder{ctx: dd.NewCtx(), level: level}
	}
	return encs, nil
}

type cEncoder struct {
	ctx   dd.Ctx
	level int
}

func (e cEncoder) encodeFrame(dst, src []byte) ([]byte, error) {
	return e.ctx.CompressLevel(dst, src, e.level)
}
