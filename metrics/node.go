package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/fsm"
)

// Node is what the node metrics read from the local cluster member
// (*cluster.Node).
type Node interface {
	ID() string
	Mode() cluster.Mode
	Lease() fsm.Lease
	LeaseRemaining() (epoch uint64, left time.Duration)
	RaftStatus() cluster.RaftStatus
	Subscribe() (<-chan cluster.ModeChange, func())
	ObserveLeader(f func(leaderID string)) (stop func())
}

// Modes lists the node modes in the order dashboards show them.
var Modes = []cluster.Mode{cluster.Active, cluster.Passive, cluster.Offline, cluster.Unlicensed}

// raftStates are the values of hashicorp/raft's RaftState.String().
var raftStates = []string{"Leader", "Follower", "Candidate", "Shutdown"}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
}

var (
	descNodeInfo      = desc("node_info", "Always 1; node_id names this node.", "node_id")
	descMode          = desc("node_mode", "1 for this node's current mode (ACTIVE, PASSIVE, OFFLINE, UNLICENSED), 0 for the others.", "mode")
	descEpoch         = desc("lease_epoch", "Epoch of the lease as last committed; it rises by one at every acquisition (failover or restart of the lease).")
	descHolder        = desc("lease_holder_info", "Always 1; holder is the node holding the committed lease (absent when released).", "holder")
	descLeaseHeld     = desc("lease_held", "1 while this node holds an unexpired lease on its own clock.")
	descLeaseLeft     = desc("lease_remaining_seconds", "Seconds left on this node's lease on its own monotonic clock (0 unless it holds the lease).")
	descRaftState     = desc("raft_state", "1 for this node's current Raft state (Leader, Follower, Candidate, Shutdown), 0 for the others.", "state")
	descLastContact   = desc("raft_last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader; absent before any contact).")
	descTerm          = desc("raft_term", "Current Raft term.")
	descLastIndex     = desc("raft_last_index", "Index of the last entry in this node's Raft log.")
	descCommitIndex   = desc("raft_commit_index", "Raft commit index as known by this node.")
	descAppliedIndex  = desc("raft_applied_index", "Index of the last entry applied to this node's state machine.")
	descVoters        = desc("raft_voters", "Voters in the latest Raft configuration, this node included.")
	descSessions      = desc("listener_sessions", "Open SFTP and FTP client sessions on this node (only the ACTIVE node has any).")
	descModeChanges   = desc("mode_changes_total", "Changes of this node's mode since the process started, by the mode entered; to=\"ACTIVE\" counts takeovers by this node.", "to")
	descLeaderChanges = desc("leader_changes_total", "New Raft leaders this node has learnt of since the process started (elections seen).")
)

// nodeCollector reads the node at each scrape; only the two counters are
// kept between scrapes.
type nodeCollector struct {
	node     Node
	sessions func() int

	mu            sync.Mutex
	modeChanges   map[cluster.Mode]uint64
	leaderChanges uint64
}

// WatchNode registers the node's metrics and starts counting its mode and
// leader changes. sessions reports open listener sessions (nil: none).
// stop ends the counting; call it before the node shuts down.
func (r *Registry) WatchNode(n Node, sessions func() int) (stop func(), err error) {
	c := &nodeCollector{node: n, sessions: sessions, modeChanges: map[cluster.Mode]uint64{}}
	if err := r.Register(c); err != nil {
		return nil, err
	}
	changes, unsubscribe := n.Subscribe()
	stopObserving := n.ObserveLeader(func(string) {
		c.mu.Lock()
		c.leaderChanges++
		c.mu.Unlock()
	})
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case ch := <-changes:
				c.mu.Lock()
				c.modeChanges[ch.To]++
				c.mu.Unlock()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			stopObserving()
			unsubscribe()
			close(done)
			<-finished
		})
	}, nil
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodeInfo, descMode, descEpoch, descHolder, descLeaseHeld, descLeaseLeft,
		descRaftState, descLastContact, descTerm, descLastIndex, descCommitIndex, descAppliedIndex, descVoters,
		descSessions, descModeChanges, descLeaderChanges} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	oneOf := func(d *prometheus.Desc, current string, all []string) {
		for _, v := range all {
			gauge(d, boolValue(v == current), v)
		}
	}
	n := c.node
	gauge(descNodeInfo, 1, n.ID())

	modes := make([]string, len(Modes))
	for i, m := range Modes {
		modes[i] = string(m)
	}
	oneOf(descMode, string(n.Mode()), modes)

	lease := n.Lease()
	gauge(descEpoch, float64(lease.Epoch))
	if lease.Held() {
		gauge(descHolder, 1, lease.Holder)
	}
	_, left := n.LeaseRemaining()
	gauge(descLeaseHeld, boolValue(left > 0))
	gauge(descLeaseLeft, left.Seconds())

	rs := n.RaftStatus()
	oneOf(descRaftState, rs.State, raftStates)
	switch {
	case rs.State == "Leader":
		gauge(descLastContact, 0)
	case !rs.LastContact.IsZero():
		gauge(descLastContact, time.Since(rs.LastContact).Seconds())
	}
	gauge(descTerm, float64(rs.Term))
	gauge(descLastIndex, float64(rs.LastIndex))
	gauge(descCommitIndex, float64(rs.CommitIndex))
	gauge(descAppliedIndex, float64(rs.AppliedIndex))
	gauge(descVoters, float64(rs.Voters))

	sessions := 0
	if c.sessions != nil {
		sessions = c.sessions()
	}
	gauge(descSessions, float64(sessions))

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range Modes {
		ch <- prometheus.MustNewConstMetric(descModeChanges, prometheus.CounterValue, float64(c.modeChanges[m]), string(m))
	}
	ch <- prometheus.MustNewConstMetric(descLeaderChanges, prometheus.CounterValue, float64(c.leaderChanges))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// LeaseRenewals exports udmg_lease_renewal_seconds, the time each committed
// lease renewal took from proposal to commit on the holder; the returned
// func observes one (cluster.Config.OnRenewal). A renewal that takes
// longer than Deadline - Heartbeat lets the lease run out.
func (r *Registry) LeaseRenewals() (func(time.Duration), error) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace,
		Name:      "lease_renewal_seconds",
		Help:      "Time from proposing a lease renewal to its commit, on the lease holder; the lease runs out if it exceeds Deadline - Heartbeat.",
		Buckets:   []float64{.002, .005, .01, .025, .05, .1, .25, .5, 1, 1.5, 2, 5},
	})
	if err := r.Register(h); err != nil {
		return nil, err
	}
	return func(d time.Duration) { h.Observe(d.Seconds()) }, nil
}

// PasswordChecks exports udmg_password_checks_total: the password logins
// (SFTP, FTP, API) this node checked, by how: "bcrypt", a comparison in a
// heavy-work slot, or "remembered", a password bcrypt accepted within the
// hour answered without one (authguard.Guard.Verify). Each reads its
// count from the func given.
func (r *Registry) PasswordChecks(bcrypt, remembered func() uint64) error {
	for by, count := range map[string]func() uint64{"bcrypt": bcrypt, "remembered": remembered} {
		c := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace:   namespace,
			Name:        "password_checks_total",
			Help:        "Password logins this node checked: by bcrypt, or remembered (bcrypt accepted the same password for the same hash within the hour).",
			ConstLabels: prometheus.Labels{"by": by},
		}, func() float64 { return float64(count()) })
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// LoginFailures exports udmg_login_failures_total: failed SFTP, FTP and API
// logins this node counts, by origin: "local" (seen here) or "peer"
// (reported by another node through gossip, counted here as well). The
// returned func counts one. It never fails to count: when registering
// fails, it counts into nothing.
func (r *Registry) LoginFailures() (func(origin string), error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace,
		Name:      "login_failures_total",
		Help:      "Failed logins this node's throttle counts: seen here (origin=local) or reported by another node (origin=peer).",
	}, []string{"origin"})
	count := func(origin string) { c.WithLabelValues(origin).Inc() }
	return count, r.Register(c)
}
