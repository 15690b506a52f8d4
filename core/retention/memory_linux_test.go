package retention_test

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/nightjar-backup/nightjar/core/retention"
)

// TestEvaluateUnmapsMemory: each evaluation maps its memory limit and unmaps it when the
// run is over, whether the policy succeeded, ran out of memory or panicked.
func TestEvaluateUnmapsMemory(t *testing.T) {
	const limitMiB = 37 // a size nothing else in the process maps
	h := newHost(t)
	pol := compile(t, h, retention.Limits{MemoryMiB: limitMiB})
	in := &retention.Input{Now: last, Snapshots: []retention.Snapshot{{ID: "a", Time: last}}}
	for _, mode := range []string{"deleteall", "memhog", "panic", "deleteall"} {
		in.Params = map[string]any{"mode": mode}
		_, err := pol.Evaluate(context.Background(), in)
		if (err == nil) != (mode == "deleteall") {
			t.Fatalf("mode %s: err %v", mode, err)
		}
		if n := mappingsOfSize(t, limitMiB<<20); n != 0 {
			t.Fatalf("after mode %s: %d mappings of %d MiB left", mode, n, limitMiB)
		}
	}
}

func mappingsOfSize(t *testing.T, size uint64) int {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lo, hi, _ := strings.Cut(strings.Fields(sc.Text())[0], "-")
		a, _ := strconv.ParseUint(lo, 16, 64)
		b, _ := strconv.ParseUint(hi, 16, 64)
		if b-a == size {
			n++
		}
	}
	return n
}
