package blob

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/nightjar-backup/nightjar/sdk/blob/blobpb"
)

// ProtocolVersion is the blob protocol version this SDK speaks (package blob.v1). nightjar
// and a plugin agree on it in the go-plugin handshake; a mismatch is a clear error at start.
const ProtocolVersion = 1

// PluginName is the name of the blob plugin in go-plugin's plugin set.
const PluginName = "blob"

// Handshake returns the go-plugin handshake shared by nightjar and every sink plugin. The
// magic cookie only tells a plugin binary that nightjar started it; it is not a secret.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   "NIGHTJAR_SINK_PLUGIN",
		MagicCookieValue: "blob.v1-5b1d0c8e3f2a",
	}
}

// GRPCPlugin is the go-plugin glue for blob.v1: the server side serves Store, the client
// side returns a *Client.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Store    Store // server side only
	Versions []int // protocol versions announced by Describe; default [ProtocolVersion]
	Ring     *Ring // client side only: the data ring from AttachRing, if any

	in *ringIn // server side: the data ring nightjar passed, if any
}

// GRPCServer registers the blob.v1 service.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	versions := p.Versions
	if len(versions) == 0 {
		versions = []int{ProtocolVersion}
	}
	blobpb.RegisterStoreServer(s, newServer(p.Store, versions, p.in))
	return nil
}

// GRPCClient returns a *Client on conn.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	c := NewClient(blobpb.NewStoreClient(conn))
	c.ring = p.Ring
	return c, nil
}

// windowSize is gRPC's flow-control window per stream and per connection. The default
// (64 KiB, grown by probing) makes a 1 MiB chunk take many round trips; a fixed window of a
// few chunks keeps the socket busy.
const windowSize = 8 * ChunkSize

// ServerOptions are the gRPC server options of a blob.v1 plugin (Serve uses them).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(windowSize), grpc.InitialConnWindowSize(2 * windowSize),
		grpc.MaxRecvMsgSize(2 * ChunkSize), grpc.ReadBufferSize(256 << 10), grpc.WriteBufferSize(256 << 10),
	}
}

// DialOptions are the gRPC client options for talking to a blob.v1 plugin.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(windowSize), grpc.WithInitialConnWindowSize(2 * windowSize),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(2 * ChunkSize)),
		grpc.WithReadBufferSize(256 << 10), grpc.WithWriteBufferSize(256 << 10),
	}
}

// Serve runs store as a nightjar sink plugin: the executable's main calls it and nothing
// else. It returns when nightjar stops the plugin.
//
// What Serve does for the plugin author:
//   - the go-plugin handshake (gRPC, mutual TLS with certificates made for this run,
//     see tls.go);
//   - Describe and Configure from the store's Describer and Configurable implementations;
//   - the data ring nightjar passes (ring.go): Put data arrives through shared memory
//     instead of in gRPC messages, and the store's Put reads it as an io.Reader either way;
//   - logging: slog's default logger writes to stderr in the format nightjar forwards to
//     its own log, so log with slog and never write to stdout (stdout carries the
//     handshake; anything printed before it makes nightjar refuse the plugin);
//   - a parent watch: when nightjar dies without stopping the plugin (SIGKILL), the plugin
//     exits within a second instead of living on as an orphan.
//
// Run directly from a shell, the executable prints a note that it is a nightjar plugin
// and exits with status 1.
func Serve(store Store) {
	logger := hclog.New(&hclog.LoggerOptions{Name: "", Level: hclog.Trace, Output: os.Stderr, JSONFormat: true})
	slog.SetDefault(slog.New(newStderrHandler()))
	go watchParent(os.Getppid(), time.Second/2, func() {
		slog.Error("nightjar (the parent process) is gone; exiting")
		os.Exit(3)
	})
	in, err := openRing()
	if err != nil {
		slog.Warn("not using the data ring; Put data comes in chunk messages", "err", err)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{
			ProtocolVersion: {PluginName: &GRPCPlugin{Store: store, in: in}},
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, ServerOptions()...)...)
		},
		TLSProvider: serverTLS,
		Logger:      logger,
	})
}

// watchParent calls gone when the process's parent changes (the parent died and the
// process was re-parented). Polling getppid works on every Unix, unlike PR_SET_PDEATHSIG,
// which is Linux-only and fires when the parent's thread (not process) exits.
func watchParent(ppid int, every time.Duration, gone func()) {
	for {
		if os.Getppid() != ppid {
			gone()
			return
		}
		time.Sleep(every)
	}
}

// newStderrHandler writes slog records to stderr as hclog-style JSON lines, which
// go-plugin on nightjar's side parses back into leveled, structured log entries.
func newStderrHandler() slog.Handler {
	return slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			case slog.LevelKey:
				return slog.String("@level", strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	})
}

// String makes Description printable in messages.
func (d Description) String() string {
	return fmt.Sprintf("%s %s (blob protocol %v)", d.Name, d.Version, d.ProtocolVersions)
}
