package main

import (
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
	missing, later := api.FailingTransfers(t, sshd, c.Home)
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
	for _, want := range []string{`Status:\s+PLANNED`, `Attempts:\s+1 of 5`, `Error code:\s+TeConnection`, `Error:\s+dial tcp \S+ connect: connection refused`, `Next retry:\s+\S+ \(in (59m\d+s|1h0m0s), attempt 2 of 5\)`} {
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
