package retention

import "syscall"

// mapMemory maps size bytes of private, zero-filled memory that takes no RAM until touched
// (MAP_NORESERVE: a large limit reserves no swap).
func mapMemory(size uint64) ([]byte, bool) {
	if size == 0 || size > 1<<32 { // a wasm32 memory is at most 4 GiB
		return nil, false
	}
	b, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, false
	}
	return b, true
}

func unmapMemory(b []byte) { _ = syscall.Munmap(b) }
