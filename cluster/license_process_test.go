package cluster_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// waitModes polls until the nodes' /ping bodies, sorted, equal want.
func waitModes(t *testing.T, c *ts.Cluster, timeout time.Duration, want ...string) []string {
	t.Helper()
	slices.Sort(want)
	var got []string
	if !ts.Eventually(timeout, func() bool {
		got = c.Modes()
		sorted := slices.Sorted(slices.Values(got))
		return slices.Equal(sorted, want)
	}) {
		t.Fatalf("modes %q, want %q (in any order)", got, want)
	}
	return got
}

func nodeWithMode(t *testing.T, c *ts.Cluster, modes []string, mode string) *ts.Proc {
	t.Helper()
	i := slices.Index(modes, mode)
	if i < 0 {
		t.Fatalf("no %s node in %q", mode, modes)
	}
	return c.Nodes[i]
}

func TestEvaluationLicensesOneNode(t *testing.T) {
	c := ts.NewCluster(t, 3, "UDMG_LICENSE_FILE=")
	modes := waitModes(t, c, 30*time.Second, "ACTIVE", "UNLICENSED", "UNLICENSED")
	active := nodeWithMode(t, c, modes, "ACTIVE")

	// The seed's rule: with a one-node license and no licensed node left,
	// an unlicensed node takes over.
	before := map[*ts.Proc]int{}
	for _, p := range c.Nodes {
		before[p] = p.CountLog("handing leadership to a licensed node")
	}
	killed := time.Now()
	active.Kill()
	rest := &ts.Cluster{Nodes: slices.DeleteFunc(slices.Clone(c.Nodes), func(p *ts.Proc) bool { return p == active })}
	modes = waitModes(t, rest, 30*time.Second, "ACTIVE", "UNLICENSED")
	t.Logf("evaluation cluster: a new ACTIVE %v after kill -9 of the ACTIVE", time.Since(killed).Round(10*time.Millisecond))
	// A leader hands leadership only to a live node: never to the one
	// just killed, which gossip still reports alive for seconds.
	for _, p := range rest.Nodes {
		if n := p.CountLog("handing leadership to a licensed node") - before[p]; n > 0 {
			t.Errorf("%s tried %d times to hand leadership to a licensed node after the only licensed one was killed", p.Name, n)
		}
	}
	// After Deadline the dead node's slot goes to the new ACTIVE node.
	successor := nodeWithMode(t, rest, modes, "ACTIVE")
	if !ts.Eventually(15*time.Second, func() bool { return successor.CountLog("license slots assigned") > 0 || slotHolder(rest, successor) }) {
		t.Fatalf("the dead node's slot never moved to %s", successor.Name)
	}
}

// slotHolder reports whether any live node's log shows p receiving a slot.
func slotHolder(c *ts.Cluster, p *ts.Proc) bool {
	for _, q := range c.Nodes {
		for _, line := range strings.Split(q.Log(), "\n") {
			if strings.Contains(line, "license slots assigned") && strings.Contains(line, p.IP+":") {
				return true
			}
		}
	}
	return false
}

func TestTwoSlotsOnThreeNodes(t *testing.T) {
	dir := t.TempDir()
	lic := filepath.Join(dir, "two.json")
	ts.WriteLicense(t, lic, 2)
	c := ts.NewCluster(t, 3, "UDMG_LICENSE_FILE="+lic)
	modes := waitModes(t, c, 30*time.Second, "ACTIVE", "PASSIVE", "UNLICENSED")
	active := nodeWithMode(t, c, modes, "ACTIVE")
	passive := nodeWithMode(t, c, modes, "PASSIVE")
	unlicensed := nodeWithMode(t, c, modes, "UNLICENSED")

	active.Kill()
	rest := &ts.Cluster{Nodes: []*ts.Proc{passive, unlicensed}}
	// The PASSIVE node takes over; the UNLICENSED one never serves while a
	// licensed node can, then receives the dead node's slot after Deadline.
	prober := ts.StartProber([]*ts.Proc{unlicensed}, 20*time.Millisecond)
	defer prober.Stop()
	if !ts.Eventually(30*time.Second, func() bool { _, m := passive.Ping(); return m == "ACTIVE" }) {
		t.Fatalf("PASSIVE %s did not take over; modes %q", passive.Name, rest.Modes())
	}
	waitModes(t, rest, 30*time.Second, "ACTIVE", "PASSIVE")
	prober.Stop()
	if n := len(prober.Serves()); n != 0 {
		t.Fatalf("the UNLICENSED node served %d times while a licensed node could", n)
	}
}

func TestRefusedLicenseFile(t *testing.T) {
	dir := t.TempDir()
	lic := filepath.Join(dir, "tampered.json")
	ts.WriteLicense(t, lic, 5)
	data, _ := os.ReadFile(lic)
	tampered := regexp.MustCompile(`"nodes":\s*5`).ReplaceAll(data, []byte(`"nodes": 50`))
	if bytes.Equal(tampered, data) {
		t.Fatal("test license has no nodes field to tamper with")
	}
	os.WriteFile(lic, tampered, 0o644)
	c := ts.NewCluster(t, 1, "UDMG_LICENSE_FILE="+lic)
	n := c.Nodes[0]
	if !ts.Eventually(30*time.Second, func() bool { return strings.Contains(n.Log(), "leading without a license slot") }) {
		t.Fatalf("the node never settled as an unlicensed leader:\n%s", n.LogTail(20))
	}
	if !strings.Contains(n.Log(), "license refused") {
		t.Fatalf("no log line says the license was refused:\n%s", n.LogTail(20))
	}
	if _, mode := n.Ping(); mode != "UNLICENSED" {
		t.Fatalf("/ping says %s, want UNLICENSED", mode)
	}
	if ts.Greeting(n.SFTPAddr(), time.Second, "SSH-2.0-Go") {
		t.Fatal("a node with a refused license serves SFTP")
	}
}
