//go:build !linux

package local

import "os"

// writebackFile is the file itself where sync_file_range does not exist.
type writebackFile struct{ *os.File }

func newWritebackFile(f *os.File) writebackFile { return writebackFile{f} }
