package cluster_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

var fsyncStage = regexp.MustCompile(`log write\+fsync (\(not yet\) )?([0-9.]+m?s)`)

// TestLeaseLostSaysWhere: a lone ACTIVE node whose DataDir freezes (fsfreeze)
// for longer than Deadline loses its lease with its renewal stuck in the
// log write; the lease-lost line says so: how long the renewal waited
// before Raft stored it and how long the write and fsync took.
func TestLeaseLostSaysWhere(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	o := ts.Options{LoopDataDirs: true}
	if why := o.FaultsAvailable(); why != "" {
		t.Skip("!!!!!!!! SKIPPED: needs a loop-mounted DataDir to freeze: " + why + " !!!!!!!!")
	}
	c := ts.NewClusterWith(t, 1, o)
	p := c.WaitOneActive(60*time.Second, "")
	lost := p.CountLog("lease lost while leading")
	if err := p.DataFS.Freeze(); err != nil {
		t.Fatal(err)
	}
	// Frozen past Deadline (2s): the node fences on its own clock.
	fenced := ts.Eventually(10*time.Second, func() bool { code, _ := p.Ping(); return code != 200 })
	time.Sleep(time.Second) // the freeze lasts a while past the fence: the stuck write's duration
	if err := p.DataFS.Thaw(); err != nil {
		t.Fatal(err)
	}
	if !fenced {
		t.Fatal("the node still answered ACTIVE 10s after its DataDir froze")
	}
	if !ts.Eventually(20*time.Second, func() bool { return p.CountLog("lease lost while leading") > lost }) {
		t.Fatalf("no lease-lost line after the freeze:\n%s", p.LogTail(20))
	}
	var line string
	for _, l := range strings.Split(p.Log(), "\n") {
		if strings.Contains(l, "lease lost while leading") {
			line = l
		}
	}
	t.Logf("%s", line)
	m := fsyncStage.FindStringSubmatch(line)
	if m == nil || !strings.Contains(line, "queued before Raft") || !strings.Contains(line, "renewal_at_expiry") {
		t.Fatalf("the lease-lost line does not say where the renewal's time went: %s", line)
	}
	if d, err := time.ParseDuration(m[2]); err != nil || d < time.Second {
		t.Errorf("log write+fsync %s (%v), want the freeze's length (over 1s)", m[2], err)
	}
	if !ts.Eventually(30*time.Second, func() bool { code, _ := p.Ping(); return code == 200 }) {
		t.Errorf("the node did not take the lease again after the thaw")
	}
}
