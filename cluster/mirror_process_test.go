package cluster_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi"
	"github.com/udmg/gateway/httpapi/wire"
	"github.com/udmg/gateway/mirror"
	ts "github.com/udmg/gateway/testsupport"
)

// TestNodeTableInPostgres checks udmg_nodes against a real PostgreSQL: one
// row per node, the killed ACTIVE node's row OFFLINE soon after, and
// failover that does not wait for the database when it is down.
func TestNodeTableInPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	pg := ts.StartPostgres(t)
	c := ts.NewCluster(t, 3, "UDMG_DATABASE_TYPE=postgresql", "UDMG_DATABASE_ADDRESS="+pg.Addr,
		"UDMG_DATABASE_NAME="+pg.DB, "UDMG_DATABASE_USER="+pg.User, "UDMG_DATABASE_PASSWORD="+pg.Password)
	store, err := mirror.Open(context.Background(), mirror.Options{Type: "postgresql", Address: pg.Addr, Name: pg.DB, User: pg.User, Password: pg.Password})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rows := func() map[string]mirror.Row {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		rs, err := store.Nodes(ctx)
		if err != nil {
			return nil
		}
		m := map[string]mirror.Row{}
		for _, r := range rs {
			m[r.IPAddress] = r
		}
		return m
	}
	waitRows := func(what string, ok func(map[string]mirror.Row) bool) time.Time {
		t.Helper()
		var last map[string]mirror.Row
		if !ts.Eventually(30*time.Second, func() bool { last = rows(); return last != nil && ok(last) }) {
			t.Fatalf("udmg_nodes never showed %s: %+v", what, last)
		}
		return time.Now()
	}
	statuses := func(m map[string]mirror.Row) []string {
		var s []string
		for _, r := range m {
			s = append(s, r.Status)
		}
		slices.Sort(s)
		return s
	}

	active := c.WaitOneActive(30*time.Second, "PASSIVE")
	waitRows("one ACTIVE and two PASSIVE rows", func(m map[string]mirror.Row) bool {
		return slices.Equal(statuses(m), []string{"ACTIVE", "PASSIVE", "PASSIVE"}) && m[active.IP].Status == "ACTIVE" && !m[active.IP].LastActiveDate.IsZero()
	})
	if src := nodesSource(t, active); src != "database" {
		t.Fatalf("sb_mgmt_nodes read from %q with the database up", src)
	}

	prober := ts.StartProber(c.Nodes, 10*time.Millisecond)
	defer prober.Stop()
	// killActive kills the ACTIVE node and returns it, when it was killed
	// and the time until another node served SFTP.
	killActive := func(i int) (*ts.Proc, time.Time, time.Duration) {
		t.Helper()
		old := c.WaitOneActive(30*time.Second, "PASSIVE")
		if !ts.Eventually(10*time.Second, func() bool { _, ok := prober.FirstServe(time.Now().Add(-time.Second), ""); return ok }) {
			t.Fatalf("trial %d: nobody serves before the kill", i)
		}
		at := time.Now()
		old.Kill()
		var s ts.Serve
		if !ts.Eventually(30*time.Second, func() bool { var ok bool; s, ok = prober.FirstServe(at, old.Name); return ok }) {
			t.Fatalf("trial %d: no other node served after the kill", i)
		}
		return old, at, s.Recv.Sub(at)
	}

	var offline, failUp, failDown []time.Duration
	for i := range *trials {
		old, killed, failover := killActive(i)
		failUp = append(failUp, failover)
		at := waitRows("the killed node OFFLINE", func(m map[string]mirror.Row) bool { return m[old.IP].Status == "OFFLINE" })
		offline = append(offline, at.Sub(killed))
		waitRows("a new ACTIVE row", func(m map[string]mirror.Row) bool {
			return slices.Equal(statuses(m), []string{"ACTIVE", "OFFLINE", "PASSIVE"})
		})
		if err := old.Start(); err != nil {
			t.Fatal(err)
		}
		waitRows("the restarted node back", func(m map[string]mirror.Row) bool { return m[old.IP].Status == "PASSIVE" })
		t.Logf("database up, trial %d: failover %s, killed ACTIVE row OFFLINE after %s", i, failover.Round(time.Millisecond), offline[i].Round(time.Millisecond))
	}

	// With the database down the cluster fails over all the same, the API
	// answers from the cluster state, and the table catches up afterwards.
	pg.Stop(t)
	for i := range *trials {
		old, _, failover := killActive(i)
		failDown = append(failDown, failover)
		if err := old.Start(); err != nil {
			t.Fatal(err)
		}
		c.WaitOneActive(30*time.Second, "PASSIVE")
		t.Logf("database down, trial %d: failover %s", i, failover.Round(time.Millisecond))
	}
	active = c.WaitOneActive(30*time.Second, "PASSIVE")
	if src := nodesSource(t, active); src != "cluster-state" {
		t.Fatalf("sb_mgmt_nodes read from %q with the database down", src)
	}
	pg.Start(t)
	waitRows("the cluster as it is now after the database returned", func(m map[string]mirror.Row) bool {
		return slices.Equal(statuses(m), []string{"ACTIVE", "PASSIVE", "PASSIVE"}) && m[active.IP].Status == "ACTIVE"
	})
	prober.Stop()
	if overlap, first := prober.Overlap(); overlap != 0 {
		t.Fatalf("two nodes served at once for %s in total (first: %s)", overlap, first)
	}
	for _, f := range []struct {
		what string
		d    []time.Duration
	}{{"kill -> row OFFLINE", offline}, {"failover, database up", failUp}, {"failover, database down", failDown}} {
		slices.Sort(f.d)
		t.Logf("%-24s trials=%d median=%s max=%s", f.what, len(f.d), percentile(f.d, 0.5), f.d[len(f.d)-1].Round(time.Millisecond))
	}
}

// nodesSource is where n's /api/sb_mgmt_nodes read its answer.
func nodesSource(t *testing.T, n *ts.Proc) string {
	t.Helper()
	r, err := n.Admin().Do("GET", "/api/sb_mgmt_nodes", nil)
	if err != nil || r.Status != 200 {
		t.Fatalf("sb_mgmt_nodes on %s: %v %v", n.Name, r, err)
	}
	return r.Header.Get(httpapi.SourceHeader)
}

// With the embedded database every node keeps the node table itself: the
// rows of its live peers, the ACTIVE one included, stay current (refreshed
// every HeartbeatCheck), as rows in a shared PostgreSQL are.
func TestEmbeddedNodeTableCurrent(t *testing.T) {
	c := ts.NewCluster(t, 3)
	active := c.WaitOneActive(30*time.Second, "PASSIVE")
	passive := c.Other(active)
	// lastUpdate reads passive's row of the ACTIVE node; false until
	// passive holds the administrator (the init commit reaches it after
	// it reports PASSIVE) and the row.
	lastUpdate := func() (time.Time, bool) {
		r, err := passive.Admin().Do("GET", "/api/sb_mgmt_nodes", nil)
		if err != nil || r.Status != 200 {
			t.Logf("sb_mgmt_nodes on %s: %v %v", passive.Name, r, err)
			return time.Time{}, false
		}
		var list wire.NodeList
		if err := json.Unmarshal(r.Body, &list); err != nil {
			t.Fatal(err)
		}
		for _, n := range list.Nodes {
			if n.NodeIPAddress == active.IP {
				at, err := time.Parse(time.RFC3339Nano, n.NodeLastUpdate)
				if err != nil {
					t.Fatalf("nodeLastUpdate %q: %v", n.NodeLastUpdate, err)
				}
				return at, true
			}
		}
		t.Logf("no row for the ACTIVE %s in %s", active.IP, r.Body)
		return time.Time{}, false
	}
	var first time.Time
	if !ts.Eventually(10*time.Second, func() bool { at, ok := lastUpdate(); first = at; return ok }) {
		t.Fatalf("%s never showed a row of the ACTIVE %s", passive.Name, active.Name)
	}
	// Three HeartbeatChecks (1 s each at defaults) later the row is newer
	// by at least two of them.
	var last time.Time
	if !ts.Eventually(10*time.Second, func() bool { at, ok := lastUpdate(); last = at; return ok && last.Sub(first) >= 2*time.Second }) {
		t.Fatalf("%s's row of the ACTIVE %s stayed at %s (first read %s)", passive.Name, active.Name, last, first)
	}
}
