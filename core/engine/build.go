package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/config"
)

// Built is a pipeline made from a config, with what must be closed after use (plugin
// processes).
type Built struct {
	Pipeline *Pipeline
	Env      core.Env
	Sources  map[string]core.Source // by name
	closers  []io.Closer
}

// Close releases sinks that hold resources.
func (b *Built) Close() error {
	var errs []error
	for _, c := range b.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// NewEnv returns the plugin environment for cfg.
func NewEnv(cfg *config.Config, log *slog.Logger, identities []string) core.Env {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return core.Env{Pipeline: cfg.Pipeline, Host: host, StateDir: cfg.StateDir, ScratchDir: cfg.ScratchDir,
		Logger: log, Identities: identities}
}

// Build makes the sources, transforms and sinks of cfg. With only set, only the named sink
// is built (commands that read one sink do not start the others).
func Build(ctx context.Context, cfg *config.Config, reg *core.Registry, env core.Env, only string) (*Built, error) {
	b := &Built{Env: env, Sources: map[string]core.Source{}}
	p := &Pipeline{Name: cfg.Pipeline, Host: env.Host, Logger: env.Logger}
	var errs core.ConfigErrors
	var other []error
	add := func(err error) {
		var ce *core.ConfigError
		if errors.As(err, &ce) {
			errs = append(errs, ce)
		} else {
			other = append(other, err)
		}
	}
	for _, c := range cfg.Sources {
		plug, _ := reg.Source(c.Type)
		s, err := plug.New(c, componentEnv(env, "source", c.Name))
		if err != nil {
			add(wrapComp(c, err))
			continue
		}
		p.Sources = append(p.Sources, s)
		b.Sources[c.Name] = s
	}
	for _, c := range cfg.Transforms {
		plug, _ := reg.Transform(c.Type)
		t, err := plug.New(c, env)
		if err != nil {
			add(wrapComp(c, err))
			continue
		}
		p.Transforms = append(p.Transforms, t)
	}
	for _, s := range cfg.Sinks {
		if only != "" && s.Name != only {
			continue
		}
		sink, err := s.Plugin.New(ctx, s.Component, componentEnv(env, "sink", s.Name))
		if err != nil {
			add(wrapComp(s.Component, err))
			continue
		}
		if c, ok := sink.(io.Closer); ok {
			b.closers = append(b.closers, c)
		}
		p.Sinks = append(p.Sinks, NamedSink{Name: s.Name, Sink: sink})
	}
	b.Pipeline = p
	if len(errs) > 0 || len(other) > 0 {
		b.Close()
		if len(other) == 0 {
			return nil, errs
		}
		return nil, errors.Join(append(other, errsOrNil(errs))...)
	}
	return b, nil
}

func errsOrNil(e core.ConfigErrors) error {
	if len(e) == 0 {
		return nil
	}
	return e
}

func wrapComp(c *core.Component, err error) error {
	var ce *core.ConfigError
	if errors.As(err, &ce) {
		return err
	}
	what := c.Key
	if c.Name != "" {
		what = fmt.Sprintf("%s (%q)", c.Key, c.Name)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// componentEnv gives a plugin a logger that names it.
func componentEnv(env core.Env, kind, name string) core.Env {
	if env.Logger != nil {
		env.Logger = env.Logger.With(kind, name)
	}
	return env
}
