package transfer

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/fsm"
	ts "github.com/udmg/gateway/testsupport"
)

// TestPartnerSessionsReused: client transfers one after the other to a
// real sshd partner share one SSH connection; once that connection is cut
// while idle, the next transfer dials anew at its first attempt; once the
// partner's configured host key changes, the next one dials anew and is
// refused the host key, never reusing the session opened with the old one.
func TestPartnerSessionsReused(t *testing.T) {
	sshd := ts.StartSSHD(t)
	proxy := ts.StartRelay(t, "127.0.0.1:0", sshd.Addr)
	home, remote := t.TempDir(), t.TempDir()
	n := &machineNode{m: fsm.New(), epoch: 1}
	n.must(t, fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: "node-b", Session: "b1", Epoch: 1, Duration: time.Minute}})
	n.valid.Store(true)
	secrets, err := NewSecrets(kek(1, "test"), "")
	if err != nil {
		t.Fatal(err)
	}
	secrets.Bind(func() *fsm.SecretsKeys { return n.m.State().Secrets })
	key, err := secrets.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	n.must(t, fsm.Command{Op: fsm.OpSecretsKey, Epoch: 1, Secrets: &fsm.SecretsArgs{Key: key}})
	sealed, err := secrets.Seal([]byte(sshd.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	partner := fsm.Partner{Name: "p", Protocol: fsm.ProtoSFTP, Address: proxy.Addr, HostKey: sshd.HostKey}
	rule := fsm.Rule{Name: "push", Send: true, Path: remote}
	n.must(t, fsm.Command{Op: fsm.OpPartnerPut, Partner: &partner})
	n.must(t, fsm.Command{Op: fsm.OpRemoteAccountPut, RemoteAccount: &fsm.RemoteAccount{Partner: "p", Login: sshd.User, PrivateKey: sealed}})
	n.must(t, fsm.Command{Op: fsm.OpRulePut, Rule: &rule})
	e, err := Start(Config{Node: n, GatewayHome: home, Secrets: secrets, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	send := func(i int) fsm.Transfer {
		t.Helper()
		name := fmt.Sprintf("f%d.bin", i)
		if err := os.WriteFile(filepath.Join(home, name), []byte(strings.Repeat(name, 1000)), 0o640); err != nil {
			t.Fatal(err)
		}
		id, err := AddTransfer(e.cfg.IDs, n.Read, n.Apply, Planned(rule, partner, sshd.User, name, filepath.Join(remote, name), time.Now()), 1)
		if err != nil {
			t.Fatal(err)
		}
		return waitFor(t, n, id, func(tr fsm.Transfer) bool { return tr.Finished() })
	}
	for i := range 3 {
		if tr := send(i); tr.Status != fsm.StatusDone {
			t.Fatalf("transfer %d: %s %s", i, tr.Status, tr.ErrorDetails)
		}
	}
	if got := proxy.Accepted(); got != 1 {
		t.Fatalf("3 transfers one after the other opened %d connections to the partner, want 1", got)
	}

	proxy.Cut()
	if tr := send(3); tr.Status != fsm.StatusDone || tr.Attempts != 1 {
		t.Fatalf("after the idle session was cut: %s after %d attempts (%s)", tr.Status, tr.Attempts, tr.ErrorDetails)
	}
	if got := proxy.Accepted(); got != 2 {
		t.Fatalf("after the idle session was cut: %d connections, want 2", got)
	}

	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	partner.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other)))
	n.must(t, fsm.Command{Op: fsm.OpPartnerPut, Partner: &partner})
	tr := send(4)
	if tr.Status != fsm.StatusError || !strings.Contains(tr.ErrorDetails, "presented host key") {
		t.Fatalf("with another host key configured: %s %s, want ERROR naming the host key", tr.Status, tr.ErrorDetails)
	}
	if got := proxy.Accepted(); got != 3 {
		t.Fatalf("with another host key configured: %d connections, want 3 (a new dial)", got)
	}

	// A partner that stops answering (a network that drops everything, or
	// this node's service address just dropped by its fence) holds no
	// stop: the idle session from send(3) is closed without its answer.
	proxy.Stall()
	stopped := make(chan struct{})
	go func() { e.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the engine did not stop within 20s with an idle session to a silent partner (a fence would time out)")
	}
}
