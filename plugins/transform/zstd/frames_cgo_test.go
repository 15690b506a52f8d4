//go:build cgo

package zstd

import "testing"

// TestCEncoderParameters checks what the C contexts are set to: the level asked for, and
// no block splitting before the match finder (frames_cgo.go says why).
func TestCEncoderParameters(t *testing.T) {
	for _, level := range []int{1, 3, 19} {
		encs, err := newFrameEncoders(level, 2)
		if err != nil {
			t.Fatal(err)
		}
		for i, enc := range encs {
			for _, p := range []struct{ param, want int }{{cParamLevel, level}, {cParamBlockSplitter, noBlockSplitting}} {
				got, err := enc.(*cEncoder).parameter(p.param)
				if err != nil || got != p.want {
					t.Errorf("level %d, encoder %d: parameter %d is %d (%v), want %d", level, i, p.param, got, err, p.want)
				}
			}
		}
	}
}
