package registry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/crypto/bcrypt"
)

func writeHtpasswd(t *testing.T, user, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	// htpasswd -B writes $2y$; bcrypt.GenerateFromPassword writes $2a$. Accept both.
	line := user + ":" + strings.Replace(string(h), "$2a$", "$2y$", 1) + "\n"
	p := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(p, []byte("# users\n"+line), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBasicAuth(t *testing.T) {
	tr := newTestRegistry(t, Config{Htpasswd: writeHtpasswd(t, "alice", "s3cret")})

	resp, body := tr.do("GET", "/v2/", nil)
	expect(t, resp, body, http.StatusUnauthorized, codeUnauthorized)
	if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="berth-registry"` {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	if !strings.Contains(string(body), "authentication required") {
		t.Fatalf("body %s", body)
	}

	req, _ := http.NewRequest("GET", tr.ts.URL+"/v2/", nil)
	req.SetBasicAuth("alice", "wrong")
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", r2.StatusCode)
	}

	// go-containerregistry (and docker login) speak basic auth after the 401 challenge
	img := randomImage(t)
	good := remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})
	if err := remote.Write(ref(t, tr.host()+"/private/img:v1"), img, good); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(ref(t, tr.host()+"/private/img:v1"), good); err != nil {
		t.Fatal(err)
	}
	for _, auth := range []authn.Authenticator{authn.Anonymous, &authn.Basic{Username: "alice", Password: "nope"}, &authn.Basic{Username: "bob", Password: "s3cret"}} {
		_, err := remote.Image(ref(t, tr.host()+"/private/img:v1"), remote.WithAuth(auth))
		var te *transport.Error
		if !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
			t.Fatalf("pull with %v: %v", auth, err)
		}
		if !strings.Contains(err.Error(), "UNAUTHORIZED") {
			t.Fatalf("error does not say why: %v", err)
		}
	}
}

func TestHtpasswdRejectsWeakHashes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(p, []byte("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Root: t.TempDir(), Htpasswd: p}); err == nil || !strings.Contains(err.Error(), "bcrypt") {
		t.Fatalf("weak hash accepted: %v", err)
	}
}

// selfSigned writes a CA-less self-signed certificate for 127.0.0.1 and returns its paths.
func selfSigned(t *testing.T, dir, cn string, client bool) (certPath, keyPath string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	return certPath, keyPath, cert
}

// serveTLS runs Serve on a loopback listener and returns its address.
func serveTLS(t *testing.T, cfg Config) string {
	t.Helper()
	tlsConf, err := cfg.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, tlsConf) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		_ = s.Close()
	})
	return ln.Addr().String()
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, cert := selfSigned(t, dir, "server", false)
	addr := serveTLS(t, Config{Root: t.TempDir(), TLSCert: certPath, TLSKey: keyPath})

	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	img := randomImage(t)
	r := ref(t, addr+"/secure/img:v1")
	if err := remote.Write(r, img, remote.WithTransport(tr)); err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(r, remote.WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustDigest(t, img), mustDigest(t, got); a != b {
		t.Fatalf("digest %s != %s", a, b)
	}
	// a client that does not trust the certificate fails the handshake
	if _, err := (&http.Client{}).Get("https://" + addr + "/v2/"); err == nil {
		t.Fatal("untrusted certificate accepted")
	}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, cert := selfSigned(t, dir, "server", false)
	clientCert, clientKey, _ := selfSigned(t, dir, "client", true)
	addr := serveTLS(t, Config{Root: t.TempDir(), TLSCert: certPath, TLSKey: keyPath, TLSClientCA: clientCert})
	pool := x509.NewCertPool()
	pool.AddCert(cert)

	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := noCert.Get("https://" + addr + "/v2/"); err == nil {
		resp.Body.Close()
		t.Fatal("request without a client certificate accepted")
	}
	kp, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}}}}
	resp, err := withCert.Get("https://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	withCert.CloseIdleConnections()
	noCert.CloseIdleConnections()
}

func TestTLSConfigErrors(t *testing.T) {
	for _, c := range []Config{{TLSCert: "x"}, {TLSKey: "x"}, {TLSClientCA: "x"}, {TLSCert: "/nonexistent", TLSKey: "/nonexistent"}} {
		if _, err := c.tlsConfig(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}
