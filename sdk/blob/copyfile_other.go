//go:build !linux

package blob

import (
	"io"
	"os"
)

// CopyToFile copies r to f, a new and empty file, and returns the number of bytes copied.
// Here it writes through WriteBehind; on Linux it can bypass the page cache. The caller
// still syncs and closes f.
func CopyToFile(f *os.File, r io.Reader) (int64, error) {
	return io.CopyBuffer(WriteBehind(f), r, make([]byte, copyBuffer))
}
