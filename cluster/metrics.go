package cluster

import (
	"time"

	"github.com/hashicorp/raft"

	"github.com/udmg/gateway/fsm"
)

// RaftStatus is what this node's Raft member reports about itself, for
// /metrics and `udmgctl cluster status`. Reading it never waits on Raft's
// own goroutines, so a scrape cannot hang on a stuck node.
type RaftStatus struct {
	State    string // Leader, Follower, Candidate or Shutdown
	LeaderID string // "" while no leader is known
	// LastContact is when a follower last heard from the leader (zero on
	// the leader itself and before any contact).
	LastContact  time.Time
	Term         uint64
	LastIndex    uint64
	CommitIndex  uint64
	AppliedIndex uint64
	// Voters counts the voters of the latest configuration, this node
	// included.
	Voters int
}

// RaftStatus reads the Raft member's state now.
func (n *Node) RaftStatus() RaftStatus {
	_, leader := n.raft.LeaderWithID()
	s := RaftStatus{
		State:        n.raft.State().String(),
		LeaderID:     string(leader),
		Term:         n.raft.CurrentTerm(),
		LastIndex:    n.raft.LastIndex(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
		Voters:       n.voters(),
	}
	if n.raft.State() != raft.Leader {
		s.LastContact = n.raft.LastContact()
	}
	return s
}

// Lease is the lease as this node last applied it from the log: who holds
// it, its epoch, and the proposer's wall-clock times (for display only; the
// holder fences on its own monotonic clock, see LeaseRemaining).
func (n *Node) Lease() fsm.Lease { return n.machine.Lease() }

// ObserveLeader calls f with the ID of every new Raft leader this node
// learns of, until stop is called. f runs on Raft's goroutine: it must
// return at once (count, store an atomic) and never call into the node.
func (n *Node) ObserveLeader(f func(leaderID string)) (stop func()) {
	obs := raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		if lo, ok := o.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" {
			f(string(lo.LeaderID))
		}
		return false // counted here; nothing is queued
	})
	n.raft.RegisterObserver(obs)
	return func() { n.raft.DeregisterObserver(obs) }
}
