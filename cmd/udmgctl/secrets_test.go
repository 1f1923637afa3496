package main

import (
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// TestSecretsRotateThroughFollower runs `udmgctl secrets rotate` against a
// PASSIVE node of three (the write is forwarded to the leader), then fails
// the ACTIVE node over: the next ACTIVE opens the rotated key and presents
// the same SSH host key.
func TestSecretsRotateThroughFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	c := ts.NewCluster(t, 3)
	active := c.WaitOneActive(30*time.Second, "PASSIVE")
	before := ts.HostKey(t, active.SFTPAddr())
	follower := c.Other(active)

	out := mustRun(t, follower.AdminURL(), "secrets", "rotate")
	if !strings.Contains(out, "generation 2") || !strings.Contains(out, "resealed") {
		t.Fatalf("secrets rotate: %q", out)
	}
	t.Logf("udmgctl secrets rotate: %s", strings.TrimSpace(out))
	if code, _, errOut := udmgctl(follower.AdminURL(), "secrets", "rotate", "extra"); code == 0 || !strings.Contains(errOut, "unexpected argument") {
		t.Errorf("secrets rotate extra: exit %d, %q", code, errOut)
	}

	active.Kill()
	next := c.WaitOneActive(30*time.Second, "PASSIVE", active)
	if next == active {
		t.Fatal("no failover")
	}
	if got := ts.HostKey(t, next.SFTPAddr()); got != before {
		t.Errorf("host key after rotation and failover: %s, was %s", got, before)
	}
}
