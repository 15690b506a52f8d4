// Command badplugin misbehaves in the ways the plugin host must report clearly. Its
// behaviour depends on the name it is run as (the host passes no arguments and no
// environment):
//
//	nightjar-sink-junk    prints to stdout before the handshake
//	nightjar-sink-future  speaks only blob protocol version 2
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-plugin"

	"github.com/nightjar-backup/nightjar/sdk/blob"
)

type nothing struct{}

func (nothing) Put(context.Context, string, io.Reader) (int64, error) {
	return 0, errors.New("unused")
}
func (nothing) Get(context.Context, string, int64) (io.ReadCloser, error) {
	return nil, blob.ErrNotFound
}
func (nothing) List(context.Context, string, func(string, int64) error) error { return nil }
func (nothing) Delete(context.Context, string) error                          { return blob.ErrNotFound }

func main() {
	switch strings.TrimPrefix(filepath.Base(os.Args[0]), "nightjar-sink-") {
	case "junk":
		fmt.Println("Welcome to JunkStore 3000!")
		blob.Serve(nothing{})
	case "future":
		hs := blob.Handshake()
		hs.ProtocolVersion = 2
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  hs,
			VersionedPlugins: map[int]plugin.PluginSet{2: {blob.PluginName: &blob.GRPCPlugin{Store: nothing{}, Versions: []int{2}}}},
			GRPCServer:       plugin.DefaultGRPCServer,
		})
	default:
		fmt.Fprintln(os.Stderr, "badplugin: unknown name", os.Args[0])
		os.Exit(1)
	}
}
