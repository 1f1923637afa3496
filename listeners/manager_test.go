package listeners

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/fsm"
	ts "github.com/udmg/gateway/testsupport"
)

// managerOn runs a Manager for m's servers whose logins look accounts up in
// m in place, as cmd/udmg-server wires it to the node (Account:
// cluster.Node.Account); it moves server ts.StateServer to a free port and
// returns that address and the host key.
func managerOn(tb testing.TB, m *fsm.Machine) (string, ssh.PublicKey) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	applyTo(tb, m, fsm.Command{Op: fsm.OpServerPut, Server: &fsm.Server{Name: ts.StateServer, Protocol: fsm.ProtoSFTP, Port: port, Enabled: true}})
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	mgr := NewManager(ManagerConfig{Host: "127.0.0.1", GatewayHome: tb.TempDir(), HostKey: signer, Account: m.Account,
		Allowed: func() bool { return true }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := mgr.Update(m.Servers()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { mgr.Stop() })
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), signer.PublicKey()
}

func applyTo(tb testing.TB, m *fsm.Machine, c fsm.Command) {
	tb.Helper()
	b, err := fsm.Encode(c)
	if err != nil {
		tb.Fatal(err)
	}
	if r := m.Apply(b); r.Err != nil {
		tb.Fatalf("apply %s: %v", c.Op, r.Err)
	}
}

func loginSFTP(addr string, host ssh.PublicKey, login, password string) error {
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: login, Auth: []ssh.AuthMethod{ssh.Password(password)},
		HostKeyCallback: ssh.FixedHostKey(host), Timeout: 5 * time.Second})
	if err == nil {
		c.Close()
	}
	return err
}

// An account created after the servers started logs in at once, and one
// deleted no longer does: each login looks the account up in the state as
// it is then, without an Update.
func TestManagerLooksAccountsUpAtEachLogin(t *testing.T) {
	m := fsm.New()
	ts.LargeState(t, m, ts.StateSize{Accounts: 1})
	addr, host := managerOn(t, m)
	if err := loginSFTP(addr, host, "carol", "carol-pw"); err == nil {
		t.Fatal("carol logged in before her account existed")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("carol-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	applyTo(t, m, fsm.Command{Op: fsm.OpAccountPut, Account: &fsm.LocalAccount{Server: ts.StateServer, Login: "carol", PasswordHash: hash}})
	if err := loginSFTP(addr, host, "carol", "carol-pw"); err != nil {
		t.Fatalf("carol's new account: %v", err)
	}
	applyTo(t, m, fsm.Command{Op: fsm.OpAccountDelete, Name: ts.StateServer, Sub: "carol"})
	if err := loginSFTP(addr, host, "carol", "carol-pw"); err == nil {
		t.Fatal("carol logged in after her account was deleted")
	}
}

// BenchmarkLoginSFTP is one SFTP password login (TCP connect, key exchange,
// password check against the replicated state, session close) on a
// Manager whose accounts are looked up in a machine holding an empty or
// the issue's large state (testsupport.IssueState). Hashes are
// bcrypt.MinCost, so what the state costs is not hidden behind bcrypt.
// The login cost (mean and p99-ns) should not grow with the state.
func BenchmarkLoginSFTP(b *testing.B) {
	for _, tc := range []struct {
		name string
		size ts.StateSize
	}{{"empty", ts.StateSize{Accounts: 1}}, {"large", ts.IssueState}} {
		b.Run(tc.name, func(b *testing.B) {
			m := fsm.New()
			ts.LargeState(b, m, tc.size)
			addr, host := managerOn(b, m)
			ts.LoopP99(b, func() {
				if err := loginSFTP(addr, host, ts.StateLogin, ts.StatePassword); err != nil {
					b.Fatalf("login %s: %v", ts.StateLogin, err)
				}
			})
		})
	}
}
