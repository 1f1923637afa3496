package metrics_test

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/metrics"
)

// fakeNode is a node whose mode changes and leader elections the test
// drives, as cluster.Node would report them.
type fakeNode struct {
	mu       sync.Mutex
	mode     cluster.Mode
	changes  chan cluster.ModeChange
	onLeader func(string)
	stopped  bool
}

func (f *fakeNode) ID() string { return "n1:8080-mft-0" }
func (f *fakeNode) Mode() cluster.Mode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mode
}
func (f *fakeNode) Lease() fsm.Lease {
	return fsm.Lease{Holder: "n1:8080-mft-0", Epoch: 7, Duration: 2 * time.Second}
}
func (f *fakeNode) LeaseRemaining() (uint64, time.Duration) { return 7, 1500 * time.Millisecond }
func (f *fakeNode) RaftStatus() cluster.RaftStatus {
	return cluster.RaftStatus{State: "Follower", LastContact: time.Now().Add(-time.Second), Term: 3, Voters: 3}
}
func (f *fakeNode) Subscribe() (<-chan cluster.ModeChange, func()) { return f.changes, func() {} }
func (f *fakeNode) ObserveLeader(fn func(string)) func() {
	f.mu.Lock()
	f.onLeader = fn
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
	}
}

func (f *fakeNode) become(m cluster.Mode) {
	f.mu.Lock()
	f.mode = m
	f.mu.Unlock()
	f.changes <- cluster.ModeChange{To: m}
}

func transferCounts() map[string]int      { return map[string]int{"RUNNING": 2, "QUEUED": 1} }
func bytesMoved() (sent, received uint64) { return 1000, 250 }

func addTransfers(t *testing.T, reg *metrics.Registry) {
	t.Helper()
	if err := reg.AddTransferCounts(transferCounts); err != nil {
		t.Fatal(err)
	}
	if err := reg.AddTransferBytes(bytesMoved); err != nil {
		t.Fatal(err)
	}
}

func scrape(t *testing.T, reg *metrics.Registry) string {
	t.Helper()
	families, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func TestNodeMetrics(t *testing.T) {
	node := &fakeNode{mode: cluster.Passive, changes: make(chan cluster.ModeChange)}
	reg := metrics.New()
	stop, err := reg.WatchNode(node, func() int { return 4 })
	if err != nil {
		t.Fatal(err)
	}
	// The channel is unbuffered: each send returns once the watcher has it.
	node.become(cluster.Active)
	node.become(cluster.Passive)
	node.become(cluster.Active)
	node.mu.Lock()
	node.onLeader("n2")
	node.onLeader("n1")
	node.mu.Unlock()

	want := []string{
		`udmg_node_mode{mode="ACTIVE"} 1`,
		`udmg_node_mode{mode="PASSIVE"} 0`,
		`udmg_lease_epoch 7`,
		`udmg_lease_held 1`,
		`udmg_lease_remaining_seconds 1.5`,
		`udmg_lease_holder_info{holder="n1:8080-mft-0"} 1`,
		`udmg_raft_state{state="Follower"} 1`,
		`udmg_raft_term 3`,
		`udmg_listener_sessions 4`,
		`udmg_leader_changes_total 2`,
		`udmg_mode_changes_total{to="OFFLINE"} 0`,
		`udmg_mode_changes_total{to="PASSIVE"} 1`,
	}
	// The last change may still be in the watcher's hands.
	deadline := time.Now().Add(5 * time.Second)
	var out string
	for {
		out = scrape(t, reg)
		if strings.Contains(out, `udmg_mode_changes_total{to="ACTIVE"} 2`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, w := range append(want, `udmg_mode_changes_total{to="ACTIVE"} 2`) {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q", w)
		}
	}
	if !strings.Contains(out, "udmg_raft_last_contact_seconds 1") {
		t.Errorf("last contact not about one second ago")
	}
	if t.Failed() {
		t.Log(out)
	}

	stop()
	stop() // idempotent
	node.mu.Lock()
	defer node.mu.Unlock()
	if !node.stopped {
		t.Error("stop did not end the leader observation")
	}
}

func TestTransferMetrics(t *testing.T) {
	reg := metrics.New()
	addTransfers(t, reg)
	out := scrape(t, reg)
	for _, w := range []string{
		`udmg_transfers{state="RUNNING"} 2`,
		`udmg_transfers{state="PLANNED"} 0`, // every known state, even at zero
		`udmg_transfers{state="QUEUED"} 1`,  // and states the engine adds
		`udmg_transfer_bytes_total{direction="sent"} 1000`,
		`udmg_transfer_bytes_total{direction="received"} 250`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in\n%s", w, out)
		}
	}
	if err := reg.AddTransferBytes(bytesMoved); err == nil {
		t.Error("a second byte counter was accepted; its series would clash")
	}
}

func TestLeaseRenewals(t *testing.T) {
	reg := metrics.New()
	observe, err := reg.LeaseRenewals()
	if err != nil {
		t.Fatal(err)
	}
	observe(3 * time.Millisecond)
	observe(700 * time.Millisecond)
	out := scrape(t, reg)
	for _, w := range []string{
		`udmg_lease_renewal_seconds_bucket{le="0.005"} 1`,
		`udmg_lease_renewal_seconds_bucket{le="0.5"} 1`,
		`udmg_lease_renewal_seconds_bucket{le="1"} 2`,
		`udmg_lease_renewal_seconds_count 2`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in\n%s", w, out)
		}
	}
}

// TestDashboardNames: every udmg_ metric the Grafana dashboard queries is
// one this package exports.
func TestDashboardNames(t *testing.T) {
	data, err := os.ReadFile("../deploy/grafana/udmg-cluster.json")
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.New()
	node := &fakeNode{mode: cluster.Active, changes: make(chan cluster.ModeChange)}
	stop, err := reg.WatchNode(node, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	addTransfers(t, reg)
	if _, err := reg.LeaseRenewals(); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = true
	}
	used := regexp.MustCompile(`\budmg_[a-z_]+`).FindAllString(string(data), -1)
	if len(used) < 10 {
		t.Fatalf("the dashboard queries only %d udmg_ metrics", len(used))
	}
	for _, name := range used {
		if !exported[strings.TrimSuffix(name, "_bucket")] {
			t.Errorf("the dashboard queries %s, which is not exported", name)
		}
	}
}

func TestTaskCounts(t *testing.T) {
	reg := metrics.New()
	counts := map[[2]string]uint64{{"COPY", "DONE"}: 3, {"TRANSFER", "ERROR"}: 1}
	if err := reg.AddTaskCounts(func() map[[2]string]uint64 { return counts }); err != nil {
		t.Fatal(err)
	}
	out := scrape(t, reg)
	for _, w := range []string{`udmg_tasks_total{outcome="DONE",type="COPY"} 3`, `udmg_tasks_total{outcome="ERROR",type="TRANSFER"} 1`} {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in\n%s", w, out)
		}
	}
}
