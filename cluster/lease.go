package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/udmg/gateway/fsm"
)

// raftFSM adapts the pure machine to raft and notes, on this node's clock,
// when another holder's lease entries were first seen: the new leader's
// wait starts from that moment.
type raftFSM Node

func (f *raftFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	r := f.machine.Apply(l.Data)
	switch r.Op {
	case fsm.OpLeaseAcquire, fsm.OpLeaseRenew, fsm.OpLeaseRelease:
		if r.Err == nil {
			(*Node)(f).observeLease(r.Lease, l.Index)
		}
	}
	return r
}

// arrivalLog wraps the Raft log store to note when lease entries reach this
// node. Followers learn that an entry is committed only with the next
// replicated entry (hashicorp/raft heartbeats carry no commit index), so
// they apply a renewal up to one Heartbeat after it arrived; counting from
// arrival, which is also after the holder proposed it, keeps the wait
// safe and a Heartbeat shorter.
type arrivalLog struct {
	raft.LogStore
	n *Node
}

func (s arrivalLog) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s arrivalLog) StoreLogs(logs []*raft.Log) error {
	now := time.Now()
	for _, l := range logs {
		if l.Type != raft.LogCommand || !bytes.Contains(l.Data, []byte(`"op":"lease.`)) {
			continue
		}
		c, err := fsm.Decode(l.Data)
		if err != nil || c.Lease == nil || (c.Lease.Holder == s.n.cfg.NodeID && c.Lease.Session == s.n.session) {
			continue
		}
		s.n.leaseMu.Lock()
		if _, seen := s.n.arrivals[l.Index]; !seen {
			s.n.arrivals[l.Index] = now
		}
		s.n.leaseMu.Unlock()
	}
	return s.LogStore.StoreLogs(logs)
}

func (f *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	b, err := f.machine.Snapshot()
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

func (f *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if err := f.machine.Restore(b); err != nil {
		return err
	}
	// A restored lease has no arrival time; count it as seen now.
	(*Node)(f).observeLease(f.machine.Lease(), 0)
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

func (snapshot) Release() {}

func (n *Node) mine(l fsm.Lease) bool {
	return l.Holder == n.cfg.NodeID && l.Session == n.session
}

// observeLease records when the entry at index, which left lease l, was
// first seen: at its arrival when known, else now (replayed at start-up or
// restored from a snapshot).
func (n *Node) observeLease(l fsm.Lease, index uint64) {
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	seen, ok := n.arrivals[index]
	if !ok {
		seen = time.Now()
	}
	for i := range n.arrivals {
		if i <= index {
			delete(n.arrivals, i)
		}
	}
	if l.Held() && !n.mine(l) && seen.After(n.otherSeen) {
		n.otherSeen = seen
	}
}

// safeStart is when this node may start serving after acquiring the lease:
// once every other holder's lease has surely expired. A holder's lease ends
// D after it proposed its last committed renewal; that renewal is in this
// leader's log (it was committed) and reached it no earlier than it was
// proposed, so T + D·(1+ε) is past the holder's expiry.
func (n *Node) safeStart(cur fsm.Lease, won time.Time) time.Time {
	if !cur.Held() || n.mine(cur) {
		return time.Time{}
	}
	n.leaseMu.Lock()
	t := n.otherSeen
	n.leaseMu.Unlock()
	if t.IsZero() {
		t = won
	}
	d := max(cur.Duration, n.cfg.Deadline)
	return t.Add(time.Duration(float64(d) * (1 + clockSkew)))
}

func (n *Node) setLease(epoch uint64, expiry time.Time) {
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	if epoch == n.leaseEpoch && expiry.Before(n.leaseExpiry) {
		return
	}
	n.leaseEpoch, n.leaseExpiry = epoch, expiry
}

func (n *Node) clearLease() {
	n.leaseMu.Lock()
	n.leaseExpiry = time.Time{}
	n.leaseMu.Unlock()
}

// monitorLeadership runs one leaderLoop per term of leadership, as Consul
// does: it reads raft's buffered NotifyCh and stops the loop (fencing the
// node) as soon as leadership is reported lost.
func (n *Node) monitorLeadership() {
	var term *leaderTerm
	defer func() { term.stop() }()
	for {
		select {
		case <-n.ctx.Done():
			return
		case leader := <-n.notifyCh:
			switch {
			case !leader:
				term.stop()
				term = nil
			case term == nil:
				term = n.startTerm()
			}
		}
	}
}

// leaderTerm is one running leaderLoop and the means to stop it.
type leaderTerm struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (n *Node) startTerm() *leaderTerm {
	ctx, cancel := context.WithCancel(n.ctx)
	t := &leaderTerm{cancel: cancel, done: make(chan struct{})}
	won := time.Now()
	go func() {
		defer close(t.done)
		n.leaderLoop(ctx, won)
	}()
	return t
}

// stop ends the term and waits until its services are fenced.
func (t *leaderTerm) stop() {
	if t != nil {
		t.cancel()
		<-t.done
	}
}

// leaderLoop holds the lease for as long as this node leads, taking a new
// epoch whenever the previous one was lost without losing leadership.
func (n *Node) leaderLoop(ctx context.Context, won time.Time) {
	n.log.Info("won leadership")
	reconcileDone := make(chan struct{})
	go func() {
		defer close(reconcileDone)
		n.reconcileLoop(ctx)
	}()
	defer func() { <-reconcileDone }()
	toldIneligible := false
	for ctx.Err() == nil && !n.shuttingDown.Load() {
		err := n.holdLease(ctx, won)
		if ctx.Err() != nil || n.shuttingDown.Load() {
			return
		}
		if errors.Is(err, errNotEligible) {
			if !toldIneligible {
				n.log.Info("leading without a license slot; not taking the lease")
				toldIneligible = true
			}
		} else {
			n.log.Warn("lease lost while leading; trying a new epoch", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(n.cfg.Heartbeat):
		}
	}
}

var errLeaseExpired = errors.New("lease expired before renewal committed")

// holdLease acquires the lease, waits until it is safe, runs the services and
// fences them when the lease ends. The waiting and fencing happen on this
// goroutine, which never calls into raft; renewals run on their own.
func (n *Node) holdLease(ctx context.Context, won time.Time) error {
	if err := n.raft.Barrier(n.cfg.Deadline).Error(); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	n.reconcile()
	if !n.eligible() {
		n.handOver()
		return errNotEligible
	}
	cur := n.machine.Lease()
	waitUntil := n.safeStart(cur, won)
	epoch := cur.Epoch + 1
	proposed := time.Now()
	err := n.apply(fsm.Command{Op: fsm.OpLeaseAcquire, At: time.Now(),
		Lease: &fsm.LeaseArgs{Holder: n.cfg.NodeID, Session: n.session, Epoch: epoch, Duration: n.cfg.Deadline}})
	if err != nil {
		return fmt.Errorf("acquire epoch %d: %w", epoch, err)
	}
	n.setLease(epoch, proposed.Add(n.cfg.Deadline))
	defer n.clearLease()
	n.log.Info("lease acquired", "epoch", epoch, "previous_holder", cur.Holder, "wait", max(0, time.Until(waitUntil)).Round(time.Millisecond))
	if cur.Held() && cur.Holder != n.cfg.NodeID {
		// The holder this node replaces is dead or cut off: it is
		// OFFLINE for the node table at once, not after gossip notices.
		if n.apply(fsm.Command{Op: fsm.OpNodeStatus, At: time.Now(), Status: &fsm.StatusArgs{ID: cur.Holder, Status: string(Offline)}}) == nil {
			n.reportOffline([]string{cur.Holder}, time.Now())
		}
	}

	rctx, stopRenew := context.WithCancel(ctx)
	lost := make(chan error, 1)
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		n.renewLoop(rctx, epoch, lost)
	}()
	defer func() { stopRenew(); <-renewDone }()

	if !waitUntil.IsZero() {
		if err := n.waitLease(ctx, waitUntil, lost); err != nil {
			return err
		}
	}
	if err := n.initCluster(epoch); err != nil {
		return err
	}
	if err := n.activate(); err != nil {
		return err
	}
	reason := "lease lost"
	defer func() { n.fence(reason) }()
	err = n.waitLease(ctx, time.Time{}, lost)
	switch {
	case errors.Is(err, errLeaseExpired):
		reason = "lease expired"
	case errors.Is(err, errNotEligible):
		// A licensed node can serve again: hand over as on shutdown.
		reason = "license slot needed by a licensed node"
		n.fence(reason)
		stopRenew()
		<-renewDone
		if rerr := n.releaseEpoch(epoch); rerr != nil {
			n.log.Warn("lease release failed", "err", rerr)
		}
		n.handOver()
	case ctx.Err() != nil:
		reason = "leadership lost"
	}
	return err
}

// waitLease returns nil at until (or never, when until is zero) and an error
// as soon as the lease expires, renewal is refused or leadership ends.
func (n *Node) waitLease(ctx context.Context, until time.Time, lost <-chan error) error {
	for {
		n.leaseMu.Lock()
		expiry := n.leaseExpiry
		n.leaseMu.Unlock()
		now := time.Now()
		if !now.Before(expiry) {
			return errLeaseExpired
		}
		next := expiry
		if !until.IsZero() {
			if !now.Before(until) {
				return nil
			}
			next = minTime(next, until)
		}
		if until.IsZero() {
			// While serving, look again every HeartbeatCheck whether
			// the license still lets this node be ACTIVE.
			next = minTime(next, now.Add(n.cfg.HeartbeatCheck))
			if !n.eligible() {
				return errNotEligible
			}
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-t.C:
		case err := <-lost:
			t.Stop()
			return err
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// renewLoop renews the lease every Heartbeat. A renewal extends the lease
// to D after its proposal, and only once committed.
func (n *Node) renewLoop(ctx context.Context, epoch uint64, lost chan<- error) {
	t := time.NewTicker(n.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		proposed := time.Now()
		err := n.apply(fsm.Command{Op: fsm.OpLeaseRenew, At: proposed,
			Lease: &fsm.LeaseArgs{Holder: n.cfg.NodeID, Session: n.session, Epoch: epoch}})
		switch {
		case err == nil:
			n.setLease(epoch, proposed.Add(n.cfg.Deadline))
			if n.cfg.OnRenewal != nil {
				n.cfg.OnRenewal(time.Since(proposed))
			}
		case errors.Is(err, fsm.ErrStaleEpoch), errors.Is(err, fsm.ErrNotHolder), errors.Is(err, fsm.ErrReleased),
			errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown):
			lost <- fmt.Errorf("renew epoch %d: %w", epoch, err)
			return
		default:
			n.log.Warn("lease renewal failed", "epoch", epoch, "err", err)
		}
	}
}

// activate starts the services; the caller has waited out older leases.
func (n *Node) activate() error {
	n.activeMu.Lock()
	defer n.activeMu.Unlock()
	if n.active.Load() || n.shuttingDown.Load() {
		return nil
	}
	if n.cfg.Services != nil {
		if err := n.cfg.Services.Start(n.machine.State()); err != nil {
			n.cfg.Services.Stop()
			return fmt.Errorf("start services: %w", err)
		}
	}
	n.active.Store(true)
	n.publishMode("lease acquired")
	return nil
}

// fence stops serving. If the services cannot be stopped within fenceBound
// the process exits: a node that cannot stop must not keep running.
func (n *Node) fence(reason string) {
	n.activeMu.Lock()
	defer n.activeMu.Unlock()
	if !n.active.Load() {
		return
	}
	n.active.Store(false)
	watchdog := time.AfterFunc(fenceBound, func() {
		n.log.Error("fencing did not finish in time; exiting", "bound", fenceBound, "reason", reason)
		n.fenceExit(3)
	})
	if n.cfg.Services != nil {
		if err := n.cfg.Services.Stop(); err != nil {
			n.log.Warn("stopping services", "err", err)
		}
	}
	watchdog.Stop()
	n.publishMode(reason)
}
