package pluginhost

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/nightjar-backup/nightjar/core"
)

// ExecPrefix starts the file name of every sink plugin executable.
const ExecPrefix = "nightjar-sink-"

// typePattern keeps a sink type from naming a path ("../../bin/sh").
var typePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// SearchDirs returns the folders searched for plugins, in order.
func (h *Host) SearchDirs(s core.PluginSettings) []string {
	var dirs []string
	if s.Dir != "" {
		dirs = append(dirs, s.Dir)
	}
	for _, d := range filepath.SplitList(h.getenv("NIGHTJAR_PLUGIN_PATH")) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	data := h.getenv("XDG_DATA_HOME")
	if data == "" {
		if home := h.getenv("HOME"); home != "" {
			data = filepath.Join(home, ".local", "share")
		}
	}
	if data != "" {
		dirs = append(dirs, filepath.Join(data, "nightjar", "plugins"))
	}
	return dirs
}

// Find returns the executable for sink type typ; ok is false when there is none.
func (h *Host) Find(typ string, s core.PluginSettings) (path string, ok bool, err error) {
	if !typePattern.MatchString(typ) {
		return "", false, nil
	}
	for _, dir := range h.SearchDirs(s) {
		p := filepath.Join(dir, ExecPrefix+typ)
		if isExecutable(p) {
			return p, true, nil
		}
	}
	return "", false, nil
}

func isExecutable(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0
}

// Found is one plugin executable in the search path.
type Found struct {
	Type     string `json:"type"`
	Path     string `json:"path"`
	Shadowed bool   `json:"shadowed,omitempty"` // an earlier folder has the same type
}

// Discover lists every plugin executable in the search path, in search order.
func (h *Host) Discover(s core.PluginSettings) []Found {
	var out []Found
	seen := map[string]bool{}
	for _, dir := range h.SearchDirs(s) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		for _, name := range names {
			typ, ok := strings.CutPrefix(name, ExecPrefix)
			p := filepath.Join(dir, name)
			if !ok || !typePattern.MatchString(typ) || !isExecutable(p) {
				continue
			}
			out = append(out, Found{Type: typ, Path: p, Shadowed: seen[typ]})
			seen[typ] = true
		}
	}
	return out
}

// FileSHA256 returns the hex sha256 of a file.
func FileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

var pinPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkPin verifies path against the pin for typ, if there is one. It returns the pin's
// bytes for go-plugin's own check right before exec.
func checkPin(typ, path string, s core.PluginSettings) ([]byte, error) {
	pin, ok := s.Pins[typ]
	if !ok {
		return nil, nil
	}
	pin = strings.ToLower(strings.TrimSpace(pin))
	if !pinPattern.MatchString(pin) {
		return nil, fmt.Errorf("plugins.pins.%s: expected 64 hex digits (sha256sum of the plugin executable), got %q", typ, pin)
	}
	got, err := FileSHA256(path)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", path, err)
	}
	if got != pin {
		return nil, fmt.Errorf("plugin %s: its sha256 is %s but plugins.pins.%s is %s; refusing to run it (update the pin only if you trust the new file)", path, got, typ, pin)
	}
	b, _ := hex.DecodeString(pin)
	return b, nil
}
