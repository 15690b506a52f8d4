package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/config"
	"github.com/nightjar-backup/nightjar/core/engine"
)

// loadConfig reads the file named by -c (or NIGHTJAR_CONFIG).
func (a *app) loadConfig(ctx context.Context) (*config.Config, error) {
	file := a.v.GetString("config")
	if file == "" {
		return nil, fmt.Errorf("%w: no config file: pass -c FILE (or set NIGHTJAR_CONFIG)", core.ErrUsage)
	}
	return config.Load(ctx, file, a.reg)
}

// openSink loads the config and builds only the named sink (the first when name is "").
func (a *app) openSink(ctx context.Context, name string, identities []string) (*config.Config, *engine.Built, engine.NamedSink, error) {
	cfg, err := a.loadConfig(ctx)
	if err != nil {
		return nil, nil, engine.NamedSink{}, err
	}
	sc, err := cfg.Sink(name)
	if err != nil {
		return nil, nil, engine.NamedSink{}, err
	}
	b, err := engine.Build(ctx, cfg, a.reg, engine.NewEnv(cfg, a.log, identities), sc.Name)
	if err != nil {
		return nil, nil, engine.NamedSink{}, err
	}
	return cfg, b, b.Pipeline.Sinks[0], nil
}

// listSink builds the named sink (the first when name is "") and lists its complete
// snapshots, newest first. The caller closes the returned Built.
func (a *app) listSink(ctx context.Context, name string, identities []string) (*engine.Built, engine.NamedSink, []*core.Manifest, error) {
	_, b, sink, err := a.openSink(ctx, name, identities)
	if err != nil {
		return nil, engine.NamedSink{}, nil, err
	}
	ms, err := sink.Sink.List(ctx)
	if err != nil {
		b.Close()
		return nil, engine.NamedSink{}, nil, fmt.Errorf("sink %q: %w", sink.Name, err)
	}
	return b, sink, ms, nil
}

// selectSnapshots resolves "latest", "all" (when allowed) or an id among the listed ones.
func selectSnapshots(ms []*core.Manifest, which string, allowAll bool, sink string) ([]*core.Manifest, error) {
	if len(ms) == 0 {
		return nil, fmt.Errorf("sink %q has no complete snapshot", sink)
	}
	switch which {
	case "", "latest":
		return ms[:1], nil
	case "all":
		if allowAll {
			return ms, nil
		}
	}
	if _, err := core.ParseSnapshotID(which); err != nil {
		return nil, fmt.Errorf("%w: --snapshot: %v (or use latest)", core.ErrUsage, err)
	}
	for _, m := range ms {
		if string(m.ID) == which {
			return []*core.Manifest{m}, nil
		}
	}
	return nil, fmt.Errorf("sink %q has no complete snapshot %s (see `nightjar snapshots`)", sink, which)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
