package authguard

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestDefaultConcurrencyLeavesACore(t *testing.T) {
	want := max(1, runtime.GOMAXPROCS(0)-1)
	if g := New(Options{}); g.Slots() != want {
		t.Fatalf("default slots %d, want max(1, GOMAXPROCS-1) = %d", g.Slots(), want)
	}
}

// holdSlots takes every slot of g, as running password comparisons would.
func holdSlots(t *testing.T, g *Guard) (release func()) {
	t.Helper()
	var rels []func()
	for range g.Slots() {
		r, err := g.Acquire(context.Background(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		rels = append(rels, r)
	}
	return func() {
		for _, r := range rels {
			r()
		}
	}
}

// tcpPair is both ends of a loopback TCP connection (net.Pipe does not
// buffer, and both SSH ends send their version at once).
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}

// sshHandshake runs a client and a server handshake over a pipe; the
// server's host key is wrapped by g.
func sshHandshake(t *testing.T, g *Guard) error {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	hk, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	scfg := &ssh.ServerConfig{NoClientAuth: true}
	scfg.AddHostKey(g.SSHHostKey(hk))
	c1, c2 := tcpPair(t)
	defer c1.Close()
	defer c2.Close()
	srvErr := make(chan error, 1)
	go func() {
		_, _, _, err := ssh.NewServerConn(c1, scfg)
		c1.Close() // as the listener does when the handshake fails
		srvErr <- err
	}()
	conn, _, _, err := ssh.NewClientConn(c2, "pipe", &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err == nil {
		conn.Close()
	}
	if serr := <-srvErr; serr != nil {
		return serr
	}
	return err
}

// TestSSHHandshakeTakesASlot: the host key's signature waits for a heavy
// slot; with every slot held past the handshake wait, the handshake fails
// (and the connection closes) without signing; once a slot frees, it
// succeeds.
func TestSSHHandshakeTakesASlot(t *testing.T) {
	g := New(Options{Concurrency: 1, HandshakeWait: 300 * time.Millisecond})
	release := holdSlots(t, g)
	start := time.Now()
	err := sshHandshake(t, g)
	if !errors.Is(err, ErrHandshakeBusy) {
		t.Fatalf("handshake with every slot taken: %v, want ErrHandshakeBusy", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("refused after %s, before the handshake wait", d)
	}
	release()
	// A slot that frees within the wait lets the waiting handshake on.
	g2 := New(Options{Concurrency: 1, HandshakeWait: 5 * time.Second})
	rel2 := holdSlots(t, g2)
	time.AfterFunc(100*time.Millisecond, rel2)
	if err := sshHandshake(t, g2); err != nil {
		t.Fatalf("handshake once a slot freed: %v", err)
	}
	if g2.InUse() != 0 {
		t.Fatalf("%d slots still taken after the handshake", g2.InUse())
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pipe"}, DNSNames: []string{"pipe"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func tlsHandshake(t *testing.T, cert tls.Certificate) error {
	c1, c2 := tcpPair(t)
	defer c1.Close()
	defer c2.Close()
	srvErr := make(chan error, 1)
	go func() {
		s := tls.Server(c1, &tls.Config{Certificates: []tls.Certificate{cert}})
		err := s.Handshake()
		c1.Close()
		srvErr <- err
	}()
	cerr := tls.Client(c2, &tls.Config{InsecureSkipVerify: true}).Handshake()
	if err := <-srvErr; err != nil {
		return err
	}
	return cerr
}

// busy reports a handshake failed for want of a slot (crypto/tls does not
// wrap the signer's error).
func busy(err error) bool {
	return err != nil && strings.Contains(err.Error(), ErrHandshakeBusy.Error())
}

// TestTLSHandshakeTakesASlot: the certificate's signature (FTPS, the
// admin API's HTTPS) waits for a heavy slot as the SSH one does.
func TestTLSHandshakeTakesASlot(t *testing.T) {
	g := New(Options{Concurrency: 1, HandshakeWait: 300 * time.Millisecond})
	cert := g.TLSCertificate(selfSigned(t))
	release := holdSlots(t, g)
	if err := tlsHandshake(t, cert); !busy(err) {
		t.Fatalf("TLS handshake with every slot taken: %v, want ErrHandshakeBusy", err)
	}
	release()
	if err := tlsHandshake(t, cert); err != nil {
		t.Fatalf("TLS handshake with a free slot: %v", err)
	}
	if g.InUse() != 0 {
		t.Fatalf("%d slots still taken after the handshake", g.InUse())
	}
}

// TestComparisonsAndHandshakesShareSlots: a running password comparison
// holds the slot a handshake needs (one bound for all heavy work).
func TestComparisonsAndHandshakesShareSlots(t *testing.T) {
	g := New(Options{Concurrency: 1, HandshakeWait: 200 * time.Millisecond})
	cert := g.TLSCertificate(selfSigned(t))
	inCheck, done := make(chan struct{}), make(chan struct{})
	go func() {
		_, _ = g.Check(context.Background(), func() bool { close(inCheck); <-done; return false })
	}()
	<-inCheck
	if err := tlsHandshake(t, cert); !busy(err) {
		t.Errorf("TLS handshake during a comparison on the only slot: %v, want ErrHandshakeBusy", err)
	}
	close(done)
	if ok, err := g.Check(context.Background(), func() bool { return true }); !ok || err != nil {
		t.Fatalf("comparison after: %v %v", ok, err)
	}
	if g.Compares() != 2 {
		t.Fatalf("Compares = %d, want 2", g.Compares())
	}
}
