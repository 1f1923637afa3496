package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// udmgctl runs the command in process against addr as the initial
// administrator and returns its exit code, stdout and stderr.
func udmgctl(addr string, args ...string) (int, string, string) {
	env := map[string]string{"UDMGCTL_ADDR": addr, "UDMGCTL_PASSWORD": ts.AdminPassword}
	var out, errOut bytes.Buffer
	code := run(args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustRun(t *testing.T, addr string, args ...string) string {
	t.Helper()
	code, out, errOut := udmgctl(addr, args...)
	if code != 0 {
		t.Fatalf("udmgctl %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// TestLicenseSignAndShow is the vendor's side: a key pair, a signed license,
// and the file checked locally against the public key; a tampered file is
// refused with its reason.
func TestLicenseSignAndShow(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "", "license", "keygen", "--out", dir)
	lic := filepath.Join(dir, "acme.json")
	mustRun(t, "", "license", "sign", "--key", filepath.Join(dir, "vendor.key"), "--licensee", "ACME Corp",
		"--nodes", "2", "--expires", time.Now().AddDate(1, 0, 0).Format(time.DateOnly), "--out", lic)

	out := mustRun(t, "", "license", "show", "--file", lic, "--pubkey", filepath.Join(dir, "vendor.pub"))
	for _, want := range []string{"ACME Corp", "2"} {
		if !strings.Contains(out, want) {
			t.Errorf("license show does not mention %q:\n%s", want, out)
		}
	}

	data, err := os.ReadFile(lic)
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(dir, "tampered.json")
	if err := os.WriteFile(tampered, bytes.Replace(data, []byte("ACME Corp"), []byte("ACME Corq"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := udmgctl("", "license", "show", "--file", tampered, "--pubkey", filepath.Join(dir, "vendor.pub"))
	if code == 0 && !strings.Contains(out, "signature") || code != 0 && !strings.Contains(errOut, "signature") {
		t.Fatalf("tampered license: exit %d, out %q, err %q: no word of the signature", code, out, errOut)
	}
}

// TestAgainstCluster drives a real three-node cluster on the evaluation
// license: nodes list, a user added through a follower, and a license
// installed through the API that turns the UNLICENSED nodes PASSIVE.
func TestAgainstCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	c := ts.NewCluster(t, 3, "UDMG_LICENSE_FILE=")
	active := c.WaitOneActive(30*time.Second, "UNLICENSED")
	follower := c.Other(active)

	// The follower learns the initial administrator from the leader, and
	// its embedded table has every node's row with its uptime (peers'
	// start times come through the replicated registry).
	var nodes struct {
		Nodes []struct{ NodeID, NodeStatus, NodeUptime string }
	}
	var errOut string
	if !ts.Eventually(10*time.Second, func() bool {
		var code int
		var out string
		code, out, errOut = udmgctl(follower.AdminURL(), "nodes", "list", "--json")
		if code != 0 || json.Unmarshal([]byte(out), &nodes) != nil || len(nodes.Nodes) != 3 {
			return false
		}
		for _, n := range nodes.Nodes {
			if d, err := time.ParseDuration(n.NodeUptime); err != nil || d <= 0 {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("nodes list --json on a follower: %+v, %s", nodes, errOut)
	}
	// The registry the follower's table is written from catches up within
	// a HeartbeatCheck or two.
	var table string
	if !ts.Eventually(10*time.Second, func() bool {
		table = mustRun(t, follower.AdminURL(), "nodes", "list")
		return len(regexp.MustCompile(`\sACTIVE\s{2}`).FindAllString(table, -1)) == 1 && strings.Count(table, "UNLICENSED") == 2
	}) {
		t.Fatalf("nodes list on the evaluation license:\n%s", table)
	}

	// A write on a follower is carried out by the leader.
	mustRun(t, follower.AdminURL(), "users", "add", "bob", "--password", "bob-password-1", "--perms", "users=r--")
	for _, p := range []*ts.Proc{active, follower} {
		if !ts.Eventually(10*time.Second, func() bool {
			_, out, _ := udmgctl(p.AdminURL(), "users", "list")
			return strings.Contains(out, "bob")
		}) {
			t.Fatalf("bob, added through a follower, never listed on %s", p.Name)
		}
	}
	code, _, errOut := udmgctl(follower.AdminURL(), "--user", "bob", "--password", "bob-password-1", "users", "add", "eve", "--password", "eve-password-1")
	if code == 0 || !strings.Contains(errOut, "permission denied") {
		t.Fatalf("bob (users read only) added a user: exit %d, %q", code, errOut)
	}

	lic := filepath.Join(t.TempDir(), "license.json")
	ts.WriteLicense(t, lic, 3)
	mustRun(t, follower.AdminURL(), "license", "install", lic)
	c.WaitOneActive(30*time.Second, "PASSIVE")
	if out := mustRun(t, active.AdminURL(), "license", "show"); !strings.Contains(out, "udmg tests") {
		t.Fatalf("license show after install:\n%s", out)
	}
}
