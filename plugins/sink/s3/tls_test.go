package s3

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"
)

// tlsFront terminates TLS on 127.0.0.1 and forwards the plain bytes to target, so the store
// runs its HTTPS path (secure: true, as with Spaces and AWS) against the real MinIO. It
// returns the address and a pool that trusts its certificate.
func tlsFront(t *testing.T, target string) (string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				go func() { _, _ = io.Copy(s, c); s.Close() }()
				_, _ = io.Copy(c, s)
			}()
		}
	}()
	return l.Addr().String(), pool
}

func TestStoreOverHTTPS(t *testing.T) {
	srv := startServer(t)
	addr, pool := tlsFront(t, srv.m.Endpoint)
	opt := srv.options(addr)
	opt.Secure = true
	opt.Transport = &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	st := srv.store(t, opt)
	ctx := context.Background()
	for _, size := range []int{10, 2*MinPartSize + 3} {
		data := randomBytes(t, size)
		if _, err := st.Put(ctx, "tls/obj", bytes.NewReader(data)); err != nil {
			t.Fatalf("Put of %d bytes over HTTPS: %v", size, err)
		}
		if got := get(t, st, "tls/obj", 1); !bytes.Equal(got, data[1:]) {
			t.Fatalf("object of %d bytes differs over HTTPS", size)
		}
	}
	// Plain HTTP against the TLS endpoint (secure: false by mistake) fails clearly.
	opt.Secure = false
	opt.MaxRetries = 1
	_, err := srv.store(t, opt).Put(ctx, "tls/plain", bytes.NewReader([]byte("x")))
	if err == nil {
		t.Fatal("plain HTTP to a TLS endpoint succeeded")
	}
	t.Logf("error: %v", err)
}
