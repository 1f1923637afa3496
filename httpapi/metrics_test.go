package httpapi_test

import (
	"strings"
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi"
	"github.com/udmg/gateway/httpapi/wire"
	"github.com/udmg/gateway/metrics"
	ts "github.com/udmg/gateway/testsupport"
)

// TestMetrics: /metrics is Prometheus text, authenticated, and needs
// administration read; it reports the node's mode, lease and Raft state.
func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := metrics.New()
	// go-metrics has one sink per process: the nodes of parallel tests
	// write to it too, which is harmless here.
	if err := reg.BridgeRaft(); err != nil {
		t.Fatal(err)
	}
	stop, err := reg.WatchNode(e.node, func() int { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	api := e.serve(httpapi.Options{Metrics: reg.Handler()})

	expect(t, do(t, api.As("", ""), "GET", "/metrics", nil), 401, "authentication required")
	e.addUser("scraper", "scraper-password", map[string]string{"administration": "r--"})
	e.addUser("operator", "operator-password", map[string]string{"transfers": "rw-"})
	expect(t, do(t, api.As("operator", "operator-password"), "GET", "/metrics", nil), 403, "administration read")

	// Raft's own metrics arrive with its next commits (a lease renewal
	// every Heartbeat).
	scraper := api.As("scraper", "scraper-password")
	var r *ts.Response
	ts.Eventually(10*time.Second, func() bool {
		r = do(t, scraper, "GET", "/metrics", nil)
		return strings.Contains(string(r.Body), "raft_commitTime")
	})
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %s", r)
	}
	body := string(r.Body)
	for _, want := range []string{
		`udmg_node_mode{mode="ACTIVE"} 1`,
		`udmg_node_mode{mode="PASSIVE"} 0`,
		`udmg_lease_epoch `, // 1, or more where a loaded machine let a renewal run late
		`udmg_lease_held 1`,
		`udmg_raft_state{state="Leader"} 1`,
		`udmg_raft_voters 1`,
		`udmg_listener_sessions 0`,
		`udmg_mode_changes_total{to="ACTIVE"}`,
		`udmg_leader_changes_total`,
		`udmg_lease_remaining_seconds `,
		`go_goroutines `,
		`raft_commitTime{quantile="0.99"}`,
		`raft_apply `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}

	// Without a registry the endpoint says so instead of answering empty.
	expect(t, do(t, e.admin(), "GET", "/metrics", nil), 404, "not enabled")
}

// TestClusterStatus: GET /api/cluster names the ACTIVE node and the time
// left on its lease, measured by the holder itself.
func TestClusterStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("operator", "operator-password", map[string]string{"transfers": "rw-"})
	expect(t, do(t, e.admin().As("operator", "operator-password"), "GET", "/api/cluster", nil), 403, "administration read")

	r := do(t, e.admin(), "GET", "/api/cluster", nil)
	var st wire.ClusterStatus
	if err := r.Decode(&st); err != nil || r.Status != 200 {
		t.Fatalf("/api/cluster: %v %s", err, r)
	}
	id := e.node.ID()
	switch {
	case st.Active != id || st.Leader != id:
		t.Errorf("active %q leader %q, want %q", st.Active, st.Leader, id)
	case st.Lease.Epoch < 1 || st.Lease.Holder != id:
		t.Errorf("lease %+v", st.Lease)
	case st.Lease.RemainingSeconds <= 0 || st.Lease.RemainingSeconds > 2 || st.Lease.RemainingFrom != "holder clock":
		t.Errorf("remaining %.3fs from %q, want (0, 2] from the holder clock", st.Lease.RemainingSeconds, st.Lease.RemainingFrom)
	case st.AnsweredBy.Mode != "ACTIVE" || st.AnsweredBy.RaftState != "Leader":
		t.Errorf("answered by %+v", st.AnsweredBy)
	case len(st.Nodes) != 1 || !st.Nodes[0].Active || !st.Nodes[0].Leader:
		t.Errorf("nodes %+v", st.Nodes)
	}

	// Once it has renewed, the holder says how long its last renewal took.
	if !ts.Eventually(10*time.Second, func() bool {
		st = wire.ClusterStatus{}
		return do(t, e.admin(), "GET", "/api/cluster", nil).Decode(&st) == nil && st.Lease.RenewalSeconds != nil
	}) {
		t.Fatalf("no renewalSeconds from the holder: %+v", st.Lease)
	}
	if took := *st.Lease.RenewalSeconds; took <= 0 || took > 2 {
		t.Errorf("last renewal took %.4fs, want (0, 2]", took)
	}
}
