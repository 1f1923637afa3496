package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// TestDuringFailover runs udmgctl against a PASSIVE node while the ACTIVE
// node is killed under a running transfer: `transfers show --follow` rides
// out the failover to DONE, and the read commands keep answering.
func TestDuringFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real node processes")
	}
	sshd := ts.StartSSHD(t)
	c := ts.NewCluster(t, 3)
	active := c.WaitOneActive(40*time.Second, "PASSIVE")
	follower := c.Other(active)
	remoteDir := t.TempDir()
	active.Admin().AddSSHDPartner(t, sshd, remoteDir)
	const size = 512 << 20
	sum := ts.WriteRandomFile(t, filepath.Join(c.Home, "out", "big.bin"), size)
	out := mustRun(t, follower.AdminURL(), "transfers", "add", "--rule", "push", "--partner", "remote", "--account", sshd.User, "--file", "big.bin")
	var id uint64
	if _, err := fmt.Sscanf(out, "transfer %d planned", &id); err != nil {
		t.Fatalf("transfers add: %q", out)
	}
	active.Admin().WaitTransfer(t, id, 30*time.Second, "RUNNING", func(tr ts.Transfer) bool { return tr.Status == "RUNNING" && tr.Progress > 0 })

	type result struct {
		code     int
		out, err string
	}
	followed := make(chan result, 1)
	go func() {
		var out, errOut bytes.Buffer
		env := map[string]string{"UDMGCTL_ADDR": follower.AdminURL(), "UDMGCTL_PASSWORD": ts.AdminPassword}
		code := run([]string{"transfers", "show", fmt.Sprint(id), "--follow"}, func(k string) string { return env[k] }, &out, &errOut)
		followed <- result{code, out.String(), errOut.String()}
	}()

	// Kill the ACTIVE node, then run each read command until the new ACTIVE
	// serves, counting answers and refusals.
	commands := [][]string{{"nodes", "list"}, {"cluster", "status"}, {"transfers", "list"}, {"transfers", "show", fmt.Sprint(id)},
		{"users", "list"}, {"license", "show"}, {"history", "list"}, {"servers", "list"}}
	ok, failed := map[string]int{}, map[string]int{}
	killed := time.Now()
	active.Kill()
	for served := false; !served && time.Since(killed) < 30*time.Second; {
		for _, args := range commands {
			if code, _, _ := udmgctl(follower.AdminURL(), args...); code == 0 {
				ok[strings.Join(args[:2], " ")]++
			} else {
				failed[strings.Join(args[:2], " ")]++
			}
		}
		_, served = c.ActiveNow(active)
	}
	for _, args := range commands {
		name := strings.Join(args[:2], " ")
		t.Logf("during the failover %-16s answered %d times, failed %d", name, ok[name], failed[name])
		if failed[name] > 0 {
			t.Errorf("%s failed %d times on a PASSIVE node during the failover", name, failed[name])
		}
	}
	// A write goes through once the new leader is known.
	if !ts.Eventually(30*time.Second, func() bool {
		code, _, _ := udmgctl(follower.AdminURL(), "users", "add", "late", "--password", "late-password")
		return code == 0
	}) {
		t.Fatal("no write through the follower after the failover")
	}

	select {
	case r := <-followed:
		if r.code != 0 || !strings.Contains(r.out, "DONE") || !strings.Contains(r.out, "RUNNING") {
			t.Fatalf("transfers show --follow: exit %d\n%s\n%s", r.code, r.out, r.err)
		}
		t.Logf("transfers show --follow through the failover:\n%s%s", r.out, r.err)
	case <-time.After(5 * time.Minute):
		t.Fatal("transfers show --follow did not end")
	}
	if got := ts.FileSHA256(t, filepath.Join(remoteDir, "big.bin")); got != sum {
		t.Fatal("the partner's file differs after the failover")
	}
}
