package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// TestClusterStatus: `udmgctl cluster status` on a follower names the
// ACTIVE node, the lease epoch and the time left; after the ACTIVE node is
// killed the same command, on a survivor, shows the new holder and epoch.
func TestClusterStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	c := ts.NewCluster(t, 3)
	active := c.WaitOneActive(60*time.Second, "PASSIVE")
	follower := c.Other(active)
	activeID := fmt.Sprintf("%s:%d-mft-0", active.IP, ts.AdminPort)

	out := mustRun(t, follower.AdminURL(), "cluster", "status")
	for _, re := range []string{
		`(?m)^ACTIVE +` + regexp.QuoteMeta(activeID) + `$`,
		`(?m)^LEASE EPOCH +1$`,
		`(?m)^EXPIRES IN +[0-9.]+m?s \(lease 2s, measured by last renewal`,
		`(?m)^` + regexp.QuoteMeta(activeID) + ` +ACTIVE +\S+ +active, leader$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("cluster status does not match %s:\n%s", re, out)
		}
	}
	out = mustRun(t, active.AdminURL(), "cluster", "status")
	if !strings.Contains(out, "measured by holder clock") {
		t.Errorf("the holder does not measure its own lease:\n%s", out)
	}

	active.Kill()
	var st struct {
		Active string `json:"active"`
		Lease  struct {
			Epoch            uint64  `json:"epoch"`
			RemainingSeconds float64 `json:"remainingSeconds"`
		} `json:"lease"`
	}
	if !ts.Eventually(30*time.Second, func() bool {
		code, out, _ := udmgctl(follower.AdminURL(), "cluster", "status", "--json")
		return code == 0 && json.Unmarshal([]byte(out), &st) == nil &&
			st.Active != "" && st.Active != activeID && st.Lease.Epoch == 2
	}) {
		t.Fatalf("no new ACTIVE node with epoch 2 after the kill; last answer %+v", st)
	}
	next := c.WaitOneActive(30*time.Second, "", active)
	if want := fmt.Sprintf("%s:%d-mft-0", next.IP, ts.AdminPort); st.Active != want {
		t.Errorf("cluster status names %s, /ping says %s", st.Active, want)
	}
	if st.Lease.RemainingSeconds <= 0 || st.Lease.RemainingSeconds > 2 {
		t.Errorf("remaining %.3fs, want within the 2s lease", st.Lease.RemainingSeconds)
	}
}
