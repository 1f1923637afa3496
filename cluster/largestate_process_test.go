package cluster_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// seedState seeds c with the state of size (testsupport.SeedState) and
// waits until every node snapshotted it (raft checks every 2 to 4
// minutes), so that a node killed in the trials starts again from a
// snapshot and a short log, as a node of a long-running cluster does.
func seedState(t *testing.T, c *ts.Cluster, size ts.StateSize) {
	t.Helper()
	ts.SeedState(t, c, size)
	start := time.Now()
	if !ts.Eventually(10*time.Minute, func() bool { return len(snapshotSizes(c)) == len(c.Nodes) }) {
		t.Fatalf("not every node took a snapshot of the seeded state: %v", snapshotSizes(c))
	}
	t.Logf("every node snapshotted the seeded state within %s: bytes %v", time.Since(start).Round(time.Second), snapshotSizes(c))
}

// snapshotSizes gives each node's newest raft snapshot size (bytes).
func snapshotSizes(c *ts.Cluster) map[string]int64 {
	out := map[string]int64{}
	for _, p := range c.Nodes {
		files, _ := filepath.Glob(filepath.Join(p.DataDir, "snapshots", "*", "state.bin"))
		var newest time.Time
		for _, f := range files {
			if strings.HasSuffix(filepath.Dir(f), ".tmp") {
				continue // being written (raft renames it when done)
			}
			if fi, err := os.Stat(f); err == nil && fi.ModTime().After(newest) {
				newest, out[p.Name] = fi.ModTime(), fi.Size()
			}
		}
	}
	return out
}

// nodeStart matches the first line a node logs at start and the one it
// logs once its mirror and raft stores are open and the newest snapshot
// restored (raft logs the restore itself below the default level).
var nodeStart = regexp.MustCompile(`^time=(\S+) .*msg="(license loaded|node started)"`)

// startTimes reads from the nodes' logs how long each start took to
// open the raft stores and restore the newest snapshot.
func startTimes(c *ts.Cluster) []time.Duration {
	var out []time.Duration
	for _, p := range c.Nodes {
		var began time.Time
		for _, l := range strings.Split(p.Log(), "\n") {
			m := nodeStart.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				continue
			}
			if m[2] == "license loaded" {
				began = at
			} else if !began.IsZero() {
				out = append(out, at.Sub(began))
				began = time.Time{}
			}
		}
	}
	return out
}
