package retention

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// TestMapMemoryAsksForHugePages: the mapping behind a policy's memory carries the
// huge-page advice (VmFlags "hg" in /proc/self/smaps) wherever the kernel has them.
func TestMapMemoryAsksForHugePages(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Skip("this kernel has no transparent huge pages")
	}
	b, ok := mapMemory(37 << 20)
	if !ok {
		t.Fatal("mapMemory refused 37 MiB")
	}
	defer unmapMemory(b)
	flags := vmFlags(t, uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	if !strings.Contains(" "+flags+" ", " hg ") {
		t.Fatalf("VmFlags of the mapping: %q, want hg among them", flags)
	}
}

// vmFlags returns the VmFlags line of the mapping that starts at addr.
func vmFlags(t *testing.T, addr uintptr) string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := fmt.Sprintf("%x-", addr)
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = strings.HasPrefix(line, start)
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmFlags:"))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("no mapping at %#x in /proc/self/smaps", addr)
	return ""
}
