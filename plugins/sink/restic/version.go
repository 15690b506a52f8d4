package restic

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// version is a restic release, as `restic version` prints it.
type version struct{ major, minor, patch int }

func (v version) String() string { return fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.patch) }

func (v version) atLeast(major, minor int) bool {
	return v.major > major || v.major == major && v.minor >= minor
}

// minVersion is the oldest restic this sink works with: repository format 2 (compression)
// and `backup --stdin --json` with a snapshot id in the summary.
var minVersion = version{0, 14, 0}

var versionPattern = regexp.MustCompile(`^restic (\d+)\.(\d+)\.(\d+)`)

// parseVersion reads the first line of `restic version`, e.g.
// "restic 0.14.0 compiled with go1.19.8 on linux/amd64". Development builds print
// "restic 0.16.4-dev (compiled manually) ..." and parse as their release.
func parseVersion(out string) (version, error) {
	m := versionPattern.FindStringSubmatch(out)
	if m == nil {
		return version{}, fmt.Errorf("cannot read the restic version from %q", firstLine(out))
	}
	var v version
	v.major, _ = strconv.Atoi(m[1])
	v.minor, _ = strconv.Atoi(m[2])
	v.patch, _ = strconv.Atoi(m[3])
	return v, nil
}

// features are what a restic release can do beyond 0.14.
type features struct {
	// retryLock: the global --retry-lock flag (0.16): restic waits for a lock itself.
	retryLock bool
}

func featuresOf(v version) features {
	return features{retryLock: v.atLeast(0, 16)}
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

// detectVersion runs `restic version`, or reads what it printed for this very binary (same
// path, size and modification time) from <state_dir>/restic-version: starting restic costs a
// noticeable fraction of a second on a busy machine, on every nightjar command.
func detectVersion(ctx context.Context, r *runner, stateDir string) (version, error) {
	var key, cache string
	if fi, err := os.Stat(r.bin); err == nil && stateDir != "" {
		key = fmt.Sprintf("%s\t%d\t%d\t", r.bin, fi.Size(), fi.ModTime().UnixNano())
		cache = filepath.Join(stateDir, "restic-version")
		if b, err := os.ReadFile(cache); err == nil && strings.HasPrefix(string(b), key) {
			if v, err := parseVersion(strings.TrimPrefix(string(b), key)); err == nil {
				return v, nil
			}
		}
	}
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := r.output(vctx, 4096, "version")
	if err != nil {
		return version{}, fmt.Errorf("%s version: %w", r.bin, err)
	}
	v, err := parseVersion(string(out))
	if err != nil {
		return version{}, fmt.Errorf("%s: %w", r.bin, err)
	}
	if cache != "" {
		if err := writeFileAtomic(cache, []byte(key+firstLine(string(out))+"\n")); err != nil {
			r.log.Debug("cannot cache the restic version", "file", cache, "err", err)
		}
	}
	return v, nil
}
