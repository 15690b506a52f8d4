package blob_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/nightjar-backup/nightjar/sdk/blob"
)

// TestPluginTLS starts real plugin processes and checks the mutual TLS between them and
// nightjar: with the P-256 keys nightjar makes for both ends, with the hosts and plugins
// of older SDKs (go-plugin's AutoMTLS on one side), and that a wrong certificate on either
// side stops the connection.
func TestPluginTLS(t *testing.T) {
	example := buildExample(t)
	older := buildPlugin(t, "testdata/autotls")
	stranger, err := blob.NewCert()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		bin     string
		tweak   func(cfg *plugin.ClientConfig)
		peer    string // the plugin's certificate's key, when nightjar's config sees it
		wantErr string
	}{
		{name: "both ends from this SDK", bin: example, peer: "P-256"},
		{name: "plugin from an older SDK", bin: older, peer: "P-521"}, // AutoMTLS's
		{name: "host from an older SDK", bin: example, tweak: func(cfg *plugin.ClientConfig) {
			cfg.Cmd = exec.Command(cfg.Cmd.Path) // without what AttachTLS added
			cfg.TLSConfig, cfg.AutoMTLS = nil, true
		}},
		{name: "plugin with another certificate", bin: example, tweak: func(cfg *plugin.ClientConfig) {
			cfg.TLSConfig.RootCAs = x509.NewCertPool()
			cfg.TLSConfig.RootCAs.AddCert(stranger.Leaf)
		}, wantErr: "certificate"},
		{name: "host without its certificate", bin: example, tweak: func(cfg *plugin.ClientConfig) {
			cfg.TLSConfig.Certificates = nil
		}, wantErr: "connection error"}, // the plugin hangs up after the handshake
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen *tls.ConnectionState
			c, _, _, err := startWith(t, tc.bin, false, func(cfg *plugin.ClientConfig) {
				if tc.tweak != nil {
					tc.tweak(cfg)
				}
				if cfg.TLSConfig != nil {
					cfg.TLSConfig.VerifyConnection = func(cs tls.ConnectionState) error {
						seen = &cs
						return nil
					}
				}
			})
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				_, err = c.Describe(ctx)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error about the %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.peer == "" {
				return
			}
			if seen == nil || len(seen.PeerCertificates) == 0 {
				t.Fatal("no TLS connection was made")
			}
			if seen.Version != tls.VersionTLS13 {
				t.Errorf("TLS version %x, want 1.3", seen.Version)
			}
			if got := keyName(seen.PeerCertificates[0]); got != tc.peer {
				t.Errorf("the plugin's certificate has a %s key, want %s", got, tc.peer)
			}
		})
	}
}

// keyName names a certificate's key: its curve for ECDSA, else its algorithm.
func keyName(c *x509.Certificate) string {
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); ok {
		return k.Curve.Params().Name
	}
	return c.PublicKeyAlgorithm.String()
}
