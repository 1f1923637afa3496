package main

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	ts "github.com/udmg/gateway/testsupport"
)

// TestLoginFailuresClusterWide: failed logins are counted by every node, not
// only the one that saw them (issue 12 point 4). Guesses through one
// PASSIVE node's API count on the other nodes (gossip); guesses against the
// ACTIVE node's SFTP count on the node that takes over after kill -9, which
// goes on slowing the attack where its predecessor left off.
func TestLoginFailuresClusterWide(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	c := ts.NewCluster(t, 3)
	active := c.WaitOneActive(60*time.Second, "")
	a := c.Other(active)
	var b *ts.Proc
	for _, p := range c.Nodes {
		if p != active && p != a {
			b = p
		}
	}
	// One token, made on the ACTIVE node, read through every node once it
	// replicated there: no password login before the count starts.
	token := active.Admin().Tokened(t).Token
	metrics := map[*ts.Proc]*ts.APIClient{}
	for _, p := range c.Nodes {
		metrics[p] = p.Admin().WithToken(token)
		if !ts.Eventually(30*time.Second, func() bool { r, err := metrics[p].Do("GET", "/metrics", nil); return err == nil && r.Status == 200 }) {
			t.Fatalf("%s does not take the token", p.Name)
		}
	}

	// Five wrong API passwords on a: the limit, and not yet slowed.
	bad := a.Admin().As("admin", "wrong-password")
	for i := range 5 {
		if r, err := bad.Do("GET", "/api/users", nil); err != nil || r.Status != 401 {
			t.Fatalf("wrong password %d on %s: %v %v", i+1, a.Name, r, err)
		}
	}
	for _, p := range []*ts.Proc{active, b} {
		if !ts.Eventually(20*time.Second, func() bool { return loginFailures(t, metrics[p], "peer") == 5 }) {
			t.Fatalf("%s counts %v failures reported by its peers, want 5", p.Name, loginFailures(t, metrics[p], "peer"))
		}
	}
	// The sixth guess, on b, is the cluster's sixth: b slows it at once,
	// though it saw none of the five itself.
	from := len(b.Log())
	start := time.Now()
	if r, err := b.Admin().As("admin", "wrong-password").Do("GET", "/api/users", nil); err != nil || r.Status != 401 {
		t.Fatalf("wrong password on %s: %v %v", b.Name, r, err)
	}
	line := lastLine(b.Log()[from:], "authentication failed")
	if !strings.Contains(line, "user_failures=6") {
		t.Fatalf("%s's first failure is not the account's sixth: %q", b.Name, line)
	}
	t.Logf("%s, first wrong password it sees: %s (answered in %s)", b.Name, line, time.Since(start).Round(time.Millisecond))

	// b's failure reached the others too.
	if !ts.Eventually(20*time.Second, func() bool {
		return loginFailures(t, metrics[a], "peer") == 1 && loginFailures(t, metrics[active], "peer") == 6
	}) {
		t.Fatalf("b's failure did not reach the others: %s counts %v, %s %v", a.Name, loginFailures(t, metrics[a], "peer"), active.Name, loginFailures(t, metrics[active], "peer"))
	}
	// SFTP against the ACTIVE node, from another address, on another login.
	before := map[*ts.Proc]float64{a: 1, b: 5}
	for i := range 5 {
		if err := sftpPassword(active.SFTPAddr(), "127.3.0.1", "mallory", "guess"); err == nil {
			t.Fatalf("SFTP login %d of mallory succeeded", i+1)
		}
	}
	for _, p := range []*ts.Proc{a, b} {
		if !ts.Eventually(20*time.Second, func() bool { return loginFailures(t, metrics[p], "peer") == before[p]+5 }) {
			t.Fatalf("%s counts %v failures reported by its peers, want %v", p.Name, loginFailures(t, metrics[p], "peer"), before[p]+5)
		}
	}
	active.Signal(syscall.SIGKILL)
	next := c.WaitOneActive(60*time.Second, "", active)
	from = len(next.Log())
	if err := sftpPassword(next.SFTPAddr(), "127.3.0.1", "mallory", "guess"); err == nil {
		t.Fatal("SFTP login of mallory succeeded on the new ACTIVE node")
	}
	line = lastLine(next.Log()[from:], "login refused")
	if !strings.Contains(line, "login_failures=6") || !strings.Contains(line, "failures=6") {
		t.Fatalf("the new ACTIVE %s starts the attack's count afresh: %q", next.Name, line)
	}
	t.Logf("new ACTIVE %s, first SFTP guess it sees: %s", next.Name, line)
}

// sftpPassword tries one SSH password login of login from the local
// address from; nil means it got in.
func sftpPassword(addr, from, login, password string) error {
	d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(60 * time.Second))
	sc, chans, reqs, err := ssh.NewClientConn(raw, addr, &ssh.ClientConfig{User: login,
		Auth: []ssh.AuthMethod{ssh.Password(password)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		return err
	}
	ssh.NewClient(sc, chans, reqs).Close()
	return nil
}

// loginFailures reads udmg_login_failures_total{origin} from a node's
// metrics.
func loginFailures(t *testing.T, api *ts.APIClient, origin string) float64 {
	t.Helper()
	r, err := api.Do("GET", "/metrics", nil)
	if err != nil || r.Status != 200 {
		t.Fatalf("GET /metrics: %v %v", r, err)
	}
	return max(0, metricValue(string(r.Body), fmt.Sprintf(`udmg_login_failures_total{origin=%q}`, origin)))
}
