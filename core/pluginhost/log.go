package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger returns an hclog.Logger (what go-plugin logs with, and what it re-logs the
// plugin's stderr through) that forwards every entry to log.
func newHCLogger(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "plugin",
		Level:      hclog.Trace,
		JSONFormat: true,
		Output:     &slogWriter{log: log},
	})
}

// slogWriter turns hclog's JSON lines into slog records.
type slogWriter struct {
	mu  sync.Mutex
	log *slog.Logger
	buf []byte
}

func (w *slogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *slogWriter) emit(line []byte) {
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		w.log.Debug(string(line))
		return
	}
	msg, _ := m["@message"].(string)
	lvl, _ := m["@level"].(string)
	module, _ := m["@module"].(string)
	delete(m, "@message")
	delete(m, "@level")
	delete(m, "@timestamp")
	delete(m, "@module")
	delete(m, "@caller")
	level := toSlogLevel(lvl)
	// go-plugin's own chatter ("starting plugin", "plugin process exited") is for
	// debugging; what the plugin itself logs keeps its level.
	if module == "plugin" && level == slog.LevelInfo {
		level = slog.LevelDebug
	}
	if !w.log.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]any, 0, 2*len(m)+2)
	if module != "" && module != "plugin" {
		attrs = append(attrs, "plugin", strings.TrimPrefix(module, "plugin."))
	}
	for k, v := range m {
		attrs = append(attrs, k, v)
	}
	w.log.Log(context.Background(), level, msg, attrs...)
}

func toSlogLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
