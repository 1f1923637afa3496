package transfer_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// TestPartnerErrors runs transfers against a real SFTP partner (OpenSSH)
// that fail for one cause each: the error code names the cause, a
// permanent one ends in ERROR at its first attempt although attempts are
// left, a transient one (nothing listening yet) waits for its next attempt
// in PLANNED with nextRetry set and succeeds once the partner is up.
func TestPartnerErrors(t *testing.T) {
	skipShort(t)
	sshd := ts.StartSSHD(t)
	c := ts.NewCluster(t, 1)
	api := c.WaitOneActive(30*time.Second, "").Admin()
	remoteDir := t.TempDir()
	setupPartner(t, api, sshd, remoteDir)
	login := currentUser(t)
	for _, name := range []string{"ok.bin", "later.bin"} {
		ts.WriteRandomFile(t, filepath.Join(c.Home, "out", name), 1<<20)
	}

	// Partners that are wrong in one way each.
	otherKeyPath, otherPub := userKey(t)
	otherKey, err := os.ReadFile(otherKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}()
	for _, p := range []struct{ name, address, hostKey, key string }{
		{"wrong-host-key", sshd.Addr, otherPub, sshd.ClientKey},
		{"wrong-login-key", sshd.Addr, sshd.HostKey, string(otherKey)},
		{"not-up-yet", closed, sshd.HostKey, sshd.ClientKey},
	} {
		api.Must(t, 201, "POST", "/api/partners", map[string]any{"name": p.name, "protocol": "sftp", "address": p.address, "hostKey": p.hostKey})
		api.Must(t, 201, "POST", "/api/partners/"+p.name+"/accounts", map[string]any{"login": login, "privateKey": p.key})
	}
	start := func(rule, partner, file string) uint64 {
		t.Helper()
		return startTransfer(t, api, rule, file, map[string]any{"partner": partner, "maxAttempts": 10, "retryDelay": "300ms", "retryFactor": 1})
	}
	ended := func(tr ts.Transfer) bool { return tr.Status == "DONE" || tr.Status == "ERROR" }

	ok := start("push", "remote", "ok.bin")
	permanent := []struct {
		id            uint64
		code, details string
	}{
		{start("push", "wrong-host-key", "ok.bin"), "TeBadAuthentication", "host key"},
		{start("push", "wrong-login-key", "ok.bin"), "TeBadAuthentication", "unable to authenticate"},
		{start("pull", "remote", "missing.bin"), "TeFileNotFound", "missing.bin"},
	}
	later := start("push", "not-up-yet", "later.bin")

	// A transfer that succeeds on its first try made one attempt.
	if tr := api.WaitTransfer(t, ok, time.Minute, "ended", ended); tr.Status != "DONE" || tr.Attempts != 1 || tr.ErrorCode != "" {
		t.Errorf("first-try transfer ended %+v, want DONE after 1 attempt", tr)
	}
	for _, p := range permanent {
		tr := api.WaitTransfer(t, p.id, time.Minute, "ended", ended)
		if tr.Status != "ERROR" || tr.Attempts != 1 || tr.ErrorCode != p.code || !strings.Contains(tr.ErrorDetails, p.details) || tr.NextRetry != "" {
			t.Errorf("transfer to %s ended %+v, want ERROR at its first attempt with %s and %q", tr.Partner, tr, p.code, p.details)
		}
		t.Logf("%s %s: %s after %d of %d attempts, %s %q", tr.Direction, tr.Partner, tr.Status, tr.Attempts, tr.MaxAttempts, tr.ErrorCode, tr.ErrorDetails)
	}

	// Nothing listens: retried, shown PLANNED with the code, the reason
	// and the time of the next attempt.
	tr := api.WaitTransfer(t, later, time.Minute, "a failed attempt waiting for the next", func(tr ts.Transfer) bool {
		return tr.Status == "PLANNED" && tr.Attempts >= 1 || ended(tr)
	})
	next, err := time.Parse(time.RFC3339Nano, tr.NextRetry)
	if tr.Status != "PLANNED" || tr.ErrorCode != "TeConnection" || !strings.Contains(tr.ErrorDetails, "connection refused") || err != nil {
		t.Fatalf("transfer to a closed port: %+v (nextRetry: %v), want PLANNED with TeConnection and a next retry", tr, err)
	}
	if d := time.Until(next); d > 5*time.Second || d < -30*time.Second {
		t.Errorf("next retry at %s, %s from now; the retry delay is 300ms", tr.NextRetry, d)
	}
	t.Logf("while the partner is down: %s attempt %d of %d, %s %q, next at %s", tr.Status, tr.Attempts, tr.MaxAttempts, tr.ErrorCode, tr.ErrorDetails, tr.NextRetry)

	// The partner comes up: the next attempt succeeds.
	ts.StartRelay(t, closed, sshd.Addr)
	tr = api.WaitTransfer(t, later, time.Minute, "ended", ended)
	if tr.Status != "DONE" || tr.Attempts < 2 || tr.ErrorCode != "" || tr.NextRetry != "" {
		t.Fatalf("transfer once the partner is up ended %+v, want DONE after 2 attempts or more", tr)
	}
	if got, want := ts.FileSHA256(t, filepath.Join(remoteDir, "later.bin")), ts.FileSHA256(t, filepath.Join(c.Home, "out", "later.bin")); got != want {
		t.Fatal("partner's copy differs from the source")
	}
	t.Logf("partner up: %s after %d attempts", tr.Status, tr.Attempts)
}
