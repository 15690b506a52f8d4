//go:build !cgo

package zstd

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// EncoderName says which zstd encoder this build compresses with (nightjar version).
const EncoderName = "pure Go (github.com/klauspost/compress)"

// newFrameEncoders returns n handles on one pure-Go encoder, built without cgo
// (CGO_ENABLED=0, or no C compiler): its EncodeAll runs on n goroutines at once. Levels
// map onto its four speeds: 1-2 fastest, 3-5 default, 6-9 better, 10-19 best.
func newFrameEncoders(level, n int) ([]frameEncoder, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(n),
		zstd.WithWindowSize(windowFor(level)),
		zstd.WithEncoderCRC(true))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	encs := make([]frameEncoder, n)
	for i := range encs {
		encs[i] = goEncoder{enc}
	}
	return encs, nil
}

type goEncoder struct{ enc *zstd.Encoder }

func (e goEncoder) encodeFrame(dst, src []byte) ([]byte, error) {
	return e.enc.EncodeAll(src, dst[:0]), nil
}
