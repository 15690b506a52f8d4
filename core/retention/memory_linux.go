package retention

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// mapMemory maps size bytes of private, zero-filled memory that takes no RAM until touched
// (MAP_NORESERVE: a large limit reserves no swap).
//
// It asks for transparent huge pages (MADV_HUGEPAGE; a no-op where the kernel has them
// off): a Go module touches its memory a page at a time as its heap grows. For gfs on
// 10,000 snapshots (about 10 MiB touched) an evaluation took 41-45 ms instead of 62-66 ms
// on the machine of docs/benchmarks.md, and `nightjar policy test gfs` had 8,100-8,400
// minor faults instead of 9,700-11,000. The memory limit is unchanged: huge pages only
// back what the mapping already holds.
func mapMemory(size uint64) ([]byte, bool) {
	if size == 0 || size > 1<<32 { // a wasm32 memory is at most 4 GiB
		return nil, false
	}
	b, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, false
	}
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE) // a hint: refused, the memory works as well
	return b, true
}

func unmapMemory(b []byte) { _ = syscall.Munmap(b) }
