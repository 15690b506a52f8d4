//go:build cgo

package zstd

/*
#include <stddef.h>

// zstd's C API, as its zstd.h declares it; github.com/DataDog/zstd compiles the library's
// bundled source (v1.5.7) into the binary, and that package's Go API has no way to set a
// parameter, so this file declares and calls the functions itself.
typedef struct ZSTD_CCtx_s ZSTD_CCtx;
ZSTD_CCtx* ZSTD_createCCtx(void);
size_t ZSTD_freeCCtx(ZSTD_CCtx* cctx);
size_t ZSTD_CCtx_setParameter(ZSTD_CCtx* cctx, int param, int value);
size_t ZSTD_CCtx_getParameter(const ZSTD_CCtx* cctx, int param, int* value);
size_t ZSTD_compress2(ZSTD_CCtx* cctx, void* dst, size_t dstCapacity, const void* src, size_t srcSize);
size_t ZSTD_compressBound(size_t srcSize);
unsigned ZSTD_isError(size_t code);
const char* ZSTD_getErrorName(size_t code);
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	_ "github.com/DataDog/zstd" // the C library's code, which the declarations above call
)

// EncoderName says which zstd encoder this build compresses with (nightjar version).
const EncoderName = "C libzstd (cgo, github.com/DataDog/zstd)"

// zstd.h's parameter numbers (ZSTD_cParameter): 100 is in its stable API, 1017 is an
// experimental parameter, which a libzstd without it refuses (newCEncoder goes on then).
const (
	cParamLevel         = 100  // ZSTD_c_compressionLevel
	cParamBlockSplitter = 1017 // ZSTD_c_blockSplitterLevel (ZSTD_c_experimentalParam20)
	noBlockSplitting    = 1
)

// newFrameEncoders returns n encoders of zstd's reference C library, one per compressing
// goroutine: a C context is not safe for concurrent use. Levels are zstd's own, as
// `zstd -N`; the library picks the window from the level and the chunk's size (2 MiB at
// level 3, like `zstd -3` on large inputs).
//
// Why C when cgo is there: zstd is most of a backup's CPU, and at level 3 the C library
// compresses the JSON lines of bench/10-tree.sh at about 290 MB/s a core, the pure-Go
// encoder at about 220 MB/s. With the block splitter below off, backups against the
// pure-Go build (medians of 4 interleaved runs): a tree of real files 3.18 s against
// 3.64 s, one file of half random bytes 1.92 s against 2.25 s (with the splitter on, that
// file gained nothing; docs/benchmarks.md). Its frames carry no checksum of their own (the
// manifest's sha256 of the stored and the raw bytes, and age's authentication, already
// check every byte).
//
// The block splitter that zstd 1.5.7 runs before the match finder is off. On 4 MiB frames
// at level 3 it cost 5% of the time on JSON lines, 9% on random bytes and 20% on a MiB of
// each in turn (go test -bench, both on one core); tree backups took 17-20% less CPU
// without it, for stored bytes 0.03-0.9% larger (the real files of docs/benchmarks.md:
// still 3% under `zstd -3`). The zstd command of Debian 12 (1.5.4) has no such splitter.
func newFrameEncoders(level, n int) ([]frameEncoder, error) {
	encs := make([]frameEncoder, n)
	for i := range encs {
		e, err := newCEncoder(level)
		if err != nil {
			return nil, err
		}
		encs[i] = e
	}
	return encs, nil
}

type cEncoder struct{ cctx *C.ZSTD_CCtx }

func newCEncoder(level int) (*cEncoder, error) {
	cctx := C.ZSTD_createCCtx()
	if cctx == nil {
		return nil, errors.New("zstd: no memory for a compression context")
	}
	e := &cEncoder{cctx: cctx}
	runtime.AddCleanup(e, func(c *C.ZSTD_CCtx) { C.ZSTD_freeCCtx(c) }, cctx)
	if err := cError(C.ZSTD_CCtx_setParameter(cctx, cParamLevel, C.int(level))); err != nil {
		return nil, fmt.Errorf("zstd: level %d: %w", level, err)
	}
	// A libzstd before 1.5.7 (DataDog/zstd's build tag external_libzstd links the system's)
	// refuses the parameter, and has no such splitter to turn off.
	C.ZSTD_CCtx_setParameter(cctx, cParamBlockSplitter, noBlockSplitting)
	return e, nil
}

func (e *cEncoder) encodeFrame(dst, src []byte) ([]byte, error) {
	bound := int(C.ZSTD_compressBound(C.size_t(len(src))))
	if cap(dst) < bound {
		dst = make([]byte, bound)
	}
	dst = dst[:cap(dst)]
	var in unsafe.Pointer
	if len(src) > 0 {
		in = unsafe.Pointer(&src[0])
	}
	n := C.ZSTD_compress2(e.cctx, unsafe.Pointer(&dst[0]), C.size_t(len(dst)), in, C.size_t(len(src)))
	runtime.KeepAlive(e) // the context is freed only after the call
	if err := cError(n); err != nil {
		return nil, err
	}
	return dst[:n], nil
}

// parameter reads one of the context's parameters back.
func (e *cEncoder) parameter(p int) (int, error) {
	var v C.int
	err := cError(C.ZSTD_CCtx_getParameter(e.cctx, C.int(p), &v))
	runtime.KeepAlive(e)
	return int(v), err
}

func cError(code C.size_t) error {
	if C.ZSTD_isError(code) == 0 {
		return nil
	}
	return errors.New(C.GoString(C.ZSTD_getErrorName(code)))
}
