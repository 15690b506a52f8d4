package gfs_test

import (
	"os"
	"testing"

	"github.com/nightjar-backup/nightjar/core/retention"
)

// TestMain lets this test binary serve as the policy child process of the child-mode
// benchmark.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == retention.ChildArg {
		os.Exit(retention.ChildMain())
	}
	os.Exit(m.Run())
}
