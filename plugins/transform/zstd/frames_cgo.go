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
// Why C when cgo is there: on the JSON lines of the benchmark it compresses at level 3 at
// 360-390 MB/s a core, the pure-Go encoder at 205-220 MB/s, and zstd is most of a backup's
// CPU. Its frames carry no checksum of their own (the manifest's sha256 of the stored and
// the raw bytes, and age's authentication, already check every byte).
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
