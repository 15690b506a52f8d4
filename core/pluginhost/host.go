package pluginhost

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/snapstore"
	"github.com/nightjar-backup/nightjar/sdk/blob"
)

// Host finds, starts and describes sink plugins. It holds no process itself: each Plugin
// it starts is closed by its owner.
type Host struct {
	log          *slog.Logger
	getenv       func(string) string
	startTimeout time.Duration

	mu    sync.Mutex
	descs map[string]blob.Description // by executable path
	idle  map[string]*Plugin          // started by Describe, not yet used by a sink
}

// New returns a Host that logs to log and reads NIGHTJAR_PLUGIN_PATH, XDG_DATA_HOME and
// HOME through getenv (os.Getenv when nil).
func New(log *slog.Logger, getenv func(string) string) *Host {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	return &Host{log: log, getenv: getenv, startTimeout: 30 * time.Second, descs: map[string]blob.Description{}, idle: map[string]*Plugin{}}
}

// CleanupClients kills every plugin process still running; nightjar calls it when it is
// interrupted and before it exits.
func CleanupClients() { plugin.CleanupClients() }

// Plugin is one running plugin process. It is a blob.Store whose errors name the plugin.
type Plugin struct {
	Type  string
	Path  string
	Desc  blob.Description
	pc    *plugin.Client
	ring  *blob.Ring // Put data goes through it, not through gRPC
	store *blob.Client
	pid   int
}

// Start runs the plugin executable at path for sink type typ, negotiates the protocol and
// asks it to describe itself.
func (h *Host) Start(ctx context.Context, typ, path string, s core.PluginSettings, log *slog.Logger) (*Plugin, error) {
	if log == nil {
		log = h.log
	}
	pin, err := checkPin(typ, path, s)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path)
	cmd.SysProcAttr = procAttr()
	cmd.Dir = filepath.Dir(path)
	ring, err := blob.AttachRing(cmd)
	if err != nil {
		// Only speed depends on the ring: without it Put data goes in gRPC messages.
		log.Warn("no data ring for the plugin; its uploads will be slower", "path", path, "err", err)
	}
	tlsCfg, tlsPipe, err := blob.AttachTLS(cmd)
	if err != nil {
		ring.Close()
		return nil, fmt.Errorf("plugin %s: %w", path, err)
	}
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  blob.Handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{blob.ProtocolVersion: {blob.PluginName: &blob.GRPCPlugin{Ring: ring}}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  blob.DialOptions(),
		TLSConfig:        tlsCfg, // mutual TLS with P-256 keys, faster than AutoMTLS's P-521
		SkipHostEnv:      true,   // the plugin never sees nightjar's environment (secrets)
		Managed:          true,   // CleanupClients stops it on signals
		StartTimeout:     h.startTimeout,
		Logger:           newHCLogger(log.With("sink_type", typ)),
	}
	if pin != nil {
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: pin, Hash: sha256.New()}
	}
	pc := plugin.NewClient(cfg)
	p := &Plugin{Type: typ, Path: path, pc: pc, ring: ring}
	rpc, err := pc.Client()
	ring.Started()
	tlsPipe.Close()
	if err != nil {
		p.Close()
		return nil, startError(typ, path, err)
	}
	if rc := pc.ReattachConfig(); rc != nil {
		p.pid = rc.Pid
	}
	raw, err := rpc.Dispense(blob.PluginName)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("%s: %w", p.label(), err)
	}
	p.store = raw.(*blob.Client)
	dctx, cancel := context.WithTimeout(ctx, h.startTimeout)
	defer cancel()
	p.Desc, err = p.store.Describe(dctx)
	if err != nil {
		p.Close()
		return nil, p.wrap(err)
	}
	if !slices.Contains(p.Desc.ProtocolVersions, blob.ProtocolVersion) {
		p.Close()
		return nil, fmt.Errorf("%s: it describes blob protocol versions %v; this nightjar speaks version %d", p.label(), p.Desc.ProtocolVersions, blob.ProtocolVersion)
	}
	for _, f := range p.Desc.Fields {
		if reservedKeys[f.Name] {
			p.Close()
			return nil, fmt.Errorf("%s: it declares the config key %q, which nightjar reserves for itself", p.label(), f.Name)
		}
	}
	if p.Desc.Name != "" && p.Desc.Name != typ {
		log.Warn("plugin names another sink type than its file name", "path", path, "file_type", typ, "described_type", p.Desc.Name)
	}
	return p, nil
}

// reservedKeys are the sink keys core handles itself.
var reservedKeys = map[string]bool{"name": true, "type": true, "retention": true}

// startError words go-plugin's start failures for people who run nightjar.
func startError(typ, path string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Unrecognized remote plugin message"):
		line, _, _ := strings.Cut(strings.TrimPrefix(msg, "Unrecognized remote plugin message: "), "\n")
		return fmt.Errorf("plugin %s: it printed %q on stdout before its handshake; a nightjar sink plugin must write nothing to stdout (log to stderr) and call blob.Serve from main — is this really a nightjar plugin built with sdk/blob?", path, line)
	case strings.Contains(msg, "incompatible API version"):
		return fmt.Errorf("plugin %s: protocol version mismatch: this nightjar speaks blob protocol v%d; %s; rebuild the plugin against a matching sdk/blob or use a matching nightjar", path, blob.ProtocolVersion, msg)
	case strings.Contains(msg, "incompatible core API version"):
		return fmt.Errorf("plugin %s: it was built with an incompatible go-plugin version: %v", path, err)
	case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
		return fmt.Errorf("plugin %s: the file changed after its sha256 pin was checked; refusing to run it", path)
	}
	return fmt.Errorf("plugin %s (sink type %q): start: %w", path, typ, err)
}

func (p *Plugin) label() string {
	if p.pid > 0 {
		return fmt.Sprintf("plugin %s (pid %d)", filepath.Base(p.Path), p.pid)
	}
	return "plugin " + p.Path
}

// wrap names the plugin in err and says when its process is gone.
func (p *Plugin) wrap(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, blob.ErrUnavailable) || p.pc.Exited() {
		return fmt.Errorf("%s exited or crashed: %w", p.label(), err)
	}
	return fmt.Errorf("%s: %w", p.label(), err)
}

// Pid is the plugin process's id.
func (p *Plugin) Pid() int { return p.pid }

// Exited reports whether the plugin process has exited.
func (p *Plugin) Exited() bool { return p.pc.Exited() }

// Close stops the plugin process: gracefully first, then killed.
func (p *Plugin) Close() error {
	p.pc.Kill()
	return p.ring.Close()
}

// Configure sends the sink's validated config; secret keys travel as secrets.
func (p *Plugin) Configure(ctx context.Context, sink string, c *core.Component) error {
	secret := map[string]bool{}
	for _, f := range p.Desc.Fields {
		if f.Secret {
			secret[f.Name] = true
		}
	}
	return p.wrap(p.store.Configure(ctx, sink, c.Values(), secret))
}

func (p *Plugin) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	n, err := p.store.Put(ctx, key, r)
	return n, p.wrap(err)
}

func (p *Plugin) Get(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	rc, err := p.store.Get(ctx, key, offset)
	return rc, p.wrap(err)
}

func (p *Plugin) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	return p.wrap(p.store.List(ctx, prefix, fn))
}

func (p *Plugin) Delete(ctx context.Context, key string) error {
	return p.wrap(p.store.Delete(ctx, key))
}

// Describe starts the plugin at path, asks it to describe itself and stops it. Results are
// cached per path for the Host's life.
func (h *Host) Describe(ctx context.Context, typ, path string, s core.PluginSettings) (blob.Description, error) {
	h.mu.Lock()
	d, ok := h.descs[path]
	h.mu.Unlock()
	if ok {
		if _, err := checkPin(typ, path, s); err != nil {
			return d, err
		}
		return d, nil
	}
	p, err := h.Start(ctx, typ, path, s, nil)
	if err != nil {
		return blob.Description{}, err
	}
	// Keep the process for the first sink of this type: a plugin start costs a process
	// start and a TLS key pair on both sides.
	h.mu.Lock()
	h.descs[path] = p.Desc
	if _, dup := h.idle[path]; dup {
		p.Close()
	} else {
		h.idle[path] = p
	}
	h.mu.Unlock()
	return p.Desc, nil
}

// takeIdle returns the process Describe left running for path, if it is still alive.
func (h *Host) takeIdle(path string) *Plugin {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.idle[path]
	delete(h.idle, path)
	if ok && p.Exited() {
		p.Close()
		return nil
	}
	return p
}

// Close stops the plugin processes that Describe started and no sink took over.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for path, p := range h.idle {
		p.Close()
		delete(h.idle, path)
	}
	return nil
}

// Resolver returns a core.SinkResolver that makes external plugins usable as sink types.
func (h *Host) Resolver() core.SinkResolver {
	return func(ctx context.Context, typ string, s core.PluginSettings) (core.SinkPlugin, bool, error) {
		path, ok, err := h.Find(typ, s)
		if err != nil || !ok {
			return core.SinkPlugin{}, ok, err
		}
		d, err := h.Describe(ctx, typ, path, s)
		if err != nil {
			return core.SinkPlugin{}, false, err
		}
		fields, err := coreFields(d.Fields)
		if err != nil {
			return core.SinkPlugin{}, false, fmt.Errorf("plugin %s: %w", path, err)
		}
		doc := d.Doc
		if doc == "" {
			doc = fmt.Sprintf("External sink plugin %s.", path)
		}
		return core.SinkPlugin{
			Type:   typ,
			Doc:    doc,
			Fields: fields,
			New: func(ctx context.Context, c *core.Component, env core.Env) (core.Sink, error) {
				return h.newSink(ctx, typ, path, s, c, env)
			},
		}, true, nil
	}
}

// Sink is an external plugin used as a core.Sink: the snapshot layout and commit protocol
// of core/snapstore on top of the plugin's Store. Close stops the plugin.
type Sink struct {
	*snapstore.Store
	Plugin *Plugin
}

// Close stops the plugin process.
func (s *Sink) Close() error { return s.Plugin.Close() }

func (h *Host) newSink(ctx context.Context, typ, path string, s core.PluginSettings, c *core.Component, env core.Env) (core.Sink, error) {
	p := h.takeIdle(path)
	if p == nil {
		var err error
		if p, err = h.Start(ctx, typ, path, s, env.Logger); err != nil {
			return nil, err
		}
	}
	if err := p.Configure(ctx, c.Name, c); err != nil {
		p.Close()
		return nil, err
	}
	return &Sink{Store: snapstore.New(p, env.Pipeline), Plugin: p}, nil
}

// coreFields turns a plugin's declared fields into core's, so its config is validated like
// a built-in sink's.
func coreFields(in []blob.Field) ([]core.Field, error) {
	kinds := map[blob.Kind]core.Kind{
		blob.KindString: core.KindString, blob.KindPath: core.KindPath, blob.KindInt: core.KindInt,
		blob.KindFloat: core.KindFloat, blob.KindBool: core.KindBool, blob.KindDuration: core.KindDuration,
		blob.KindStrings: core.KindStrings, blob.KindStringMap: core.KindStringMap,
	}
	out := make([]core.Field, 0, len(in))
	seen := map[string]bool{}
	for _, f := range in {
		k, ok := kinds[f.Kind]
		if !ok {
			return nil, fmt.Errorf("config key %q: unknown kind %d", f.Name, f.Kind)
		}
		if f.Name == "" || seen[f.Name] {
			return nil, fmt.Errorf("config key %q: empty or declared twice", f.Name)
		}
		seen[f.Name] = true
		out = append(out, core.Field{Name: f.Name, Kind: k, Required: f.Required, Default: f.Default,
			Secret: f.Secret, Enum: f.Enum, Doc: f.Doc, Example: f.Example})
	}
	return out, nil
}
