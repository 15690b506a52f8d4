// Command autotls is a sink plugin served the way plugins built with an SDK from before
// tls.go are: no TLS provider, so go-plugin makes the plugin's key pair itself (AutoMTLS)
// and returns its certificate in the handshake. Tests start it to check that nightjar,
// which now makes both key pairs, still talks to such plugins.
package main

import (
	"context"
	"errors"
	"io"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/nightjar-backup/nightjar/sdk/blob"
)

// store only describes itself: the tests need no more than a call over the connection.
type store struct{}

func (store) Describe() blob.Description { return blob.Description{Name: "autotls", Version: "test"} }

var errNo = errors.New("autotls stores nothing")

func (store) Put(context.Context, string, io.Reader) (int64, error) { return 0, errNo }
func (store) Get(context.Context, string, int64) (io.ReadCloser, error) {
	return nil, errNo
}
func (store) List(context.Context, string, func(string, int64) error) error { return errNo }
func (store) Delete(context.Context, string) error                          { return errNo }

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  blob.Handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{blob.ProtocolVersion: {blob.PluginName: &blob.GRPCPlugin{Store: store{}}}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, blob.ServerOptions()...)...)
		},
	})
}
