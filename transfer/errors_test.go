package transfer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/udmg/gateway/fsm"
)

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// loopback accepts one connection and hands the server side to serve.
func loopback(t *testing.T, serve func(net.Conn)) net.Conn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err == nil {
			serve(c)
		}
	}()
	t.Cleanup(func() { <-done })
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "partner"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"127.0.0.1"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestClassify names real failures of the libraries the engine uses, and
// says which ones a retry cannot mend.
func TestClassify(t *testing.T) {
	refused := func() error {
		_, err := net.DialTimeout("tcp", closedPort(t), time.Second)
		return err
	}
	timeout := func() error {
		c := loopback(t, func(c net.Conn) { time.Sleep(200 * time.Millisecond); c.Close() })
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		return fmt.Errorf("read from partner: %w", err)
	}
	reset := func() error {
		c := loopback(t, func(c net.Conn) {
			c.Read(make([]byte, 1))       // the client is connected
			c.(*net.TCPConn).SetLinger(0) // close with RST
			c.Close()
		})
		_, err := c.Write([]byte("x"))
		for err == nil {
			_, err = c.Read(make([]byte, 1))
		}
		return err
	}
	unknownCert := func() error {
		cert := selfSigned(t)
		c := loopback(t, func(c net.Conn) {
			tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
			c.Close()
		})
		return tls.Client(c, &tls.Config{ServerName: "127.0.0.1"}).Handshake()
	}
	missingLocal := func() error {
		_, err := os.Open(filepath.Join(t.TempDir(), "missing"))
		return fmt.Errorf("local file: %w", err)
	}
	for _, c := range []struct {
		name      string
		err       error
		code      string
		permanent bool
	}{
		{"connection refused", refused(), fsm.TeConnection, false},
		{"read timeout", timeout(), fsm.TeConnection, false},
		{"connection reset", reset(), fsm.TeConnectionReset, false},
		{"TLS certificate of an unknown CA", unknownCert(), fsm.TeBadAuthentication, true},
		{"host key mismatch", fmt.Errorf("ssh: handshake failed: %w", permanent(fsm.TeBadAuthentication, errors.New("host key"))), fsm.TeBadAuthentication, true},
		{"ssh credentials refused", errors.New("ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain"), fsm.TeBadAuthentication, true},
		{"local file missing", missingLocal(), fsm.TeFileNotFound, true},
		{"GatewayHome missing", transient(fsm.TeInternal, fmt.Errorf("open GatewayHome: %w", missingLocal())), fsm.TeInternal, false},
		{"local permission denied", &fs.PathError{Op: "open", Path: "x", Err: syscall.EACCES}, fsm.TeForbidden, true},
		{"sftp no such file", &sftp.StatusError{Code: uint32(sftp.ErrSSHFxNoSuchFile)}, fsm.TeFileNotFound, true},
		{"sftp permission denied", fmt.Errorf("remote file: %w", &sftp.StatusError{Code: uint32(sftp.ErrSSHFxPermissionDenied)}), fsm.TeForbidden, true},
		{"sftp failure", &sftp.StatusError{Code: uint32(sftp.ErrSSHFxFailure)}, fsm.TeDataTransfer, false},
		{"sftp connection lost", sftp.ErrSSHFxConnectionLost, fsm.TeConnectionReset, false},
		{"ftp 530 not logged in", fmt.Errorf("ftp login: %w", &textproto.Error{Code: 530, Msg: "no"}), fsm.TeBadAuthentication, true},
		{"ftp 550 unavailable", &textproto.Error{Code: 550, Msg: "no such file"}, fsm.TeFileNotFound, true},
		{"ftp 421 closing", &textproto.Error{Code: 421, Msg: "too many"}, fsm.TeConnection, false},
		{"ftp 426 data closed", &textproto.Error{Code: 426, Msg: "aborted"}, fsm.TeConnectionReset, false},
		{"size mismatch", fmt.Errorf("%w: 3 of 4", errBadSize), fsm.TeBadSize, false},
		{"partner deleted", fmt.Errorf("partner x: %w", fsm.ErrUnknownObject), fsm.TeUnknownRemote, true},
		{"lease lost", ErrNotActive, fsm.TeShuttingDown, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil {
				t.Fatal("no error to classify")
			}
			if got := classify(c.err); got.code != c.code || got.permanent != c.permanent {
				t.Errorf("classify(%v) = %+v, want code %s permanent %v", c.err, got, c.code, c.permanent)
			}
		})
	}
}
