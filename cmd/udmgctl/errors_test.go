package main

import (
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// TestTransferErrorsShown: `transfers show` tells why a transfer failed
// (code, cause, attempts) and when a retrying one tries again, and
// `--follow` ends on ERROR instead of waiting for attempts that never come.
func TestTransferErrorsShown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real node processes")
	}
	sshd := ts.StartSSHD(t)
	c := ts.NewCluster(t, 1)
	n := c.WaitOneActive(30*time.Second, "")
	api := n.Admin()
	api.AddSSHDPartner(t, sshd, t.TempDir())
	if err := os.MkdirAll(c.Home, 0o755); err != nil { // where pulled files go
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	api.Must(t, 201, "POST", "/api/partners", map[string]any{"name": "down", "protocol": "sftp", "address": closed, "hostKey": sshd.HostKey})
	api.Must(t, 201, "POST", "/api/partners/down/accounts", map[string]any{"login": sshd.User, "privateKey": sshd.ClientKey})
	var missing, later ts.Transfer
	if err := api.Must(t, 201, "POST", "/api/transfers", map[string]any{"rule": "pull", "partner": "remote", "account": sshd.User, "file": "missing.bin"}).Decode(&missing); err != nil {
		t.Fatal(err)
	}
	if err := api.Must(t, 201, "POST", "/api/transfers", map[string]any{"rule": "pull", "partner": "down", "account": sshd.User, "file": "later.bin", "retryDelay": "1h"}).Decode(&later); err != nil {
		t.Fatal(err)
	}
	api.WaitTransfer(t, missing.ID, time.Minute, "ERROR", func(tr ts.Transfer) bool { return tr.Status == "ERROR" })
	api.WaitTransfer(t, later.ID, time.Minute, "waiting for its next attempt", func(tr ts.Transfer) bool { return tr.NextRetry != "" })
	addr := n.AdminURL()

	out := mustRun(t, addr, "transfers", "show", itoa(missing.ID))
	for _, want := range []string{`Status:\s+ERROR`, `Attempts:\s+1 of 5`, `Error code:\s+TeFileNotFound`, `Error:\s+remote file \S+missing.bin: file does not exist`, `Next retry:\s+-`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("transfers show of a failed transfer lacks %s:\n%s", want, out)
		}
	}
	t.Logf("transfers show %d:\n%s", missing.ID, out)

	out = mustRun(t, addr, "transfers", "show", itoa(later.ID))
	for _, want := range []string{`Status:\s+PLANNED`, `Attempts:\s+1 of 5`, `Error code:\s+TeConnection`, `Error:\s+dial tcp \S+ connect: connection refused`, `Next retry:\s+\S+ \(in 59m\d+s, attempt 2 of 5\)`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("transfers show of a retrying transfer lacks %s:\n%s", want, out)
		}
	}
	t.Logf("transfers show %d:\n%s", later.ID, out)

	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := udmgctl(addr, "transfers", "show", itoa(missing.ID), "--follow")
		done <- result{code, out, errOut}
	}()
	select {
	case r := <-done:
		if r.code == 0 || !strings.Contains(r.errOut, "ended ERROR TeFileNotFound") {
			t.Errorf("transfers show --follow of an ERROR transfer: exit %d, %q %q", r.code, r.out, r.errOut)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("transfers show --follow still waits on an ERROR transfer after 10s")
	}
}

func itoa(id uint64) string { return strconv.FormatUint(id, 10) }
