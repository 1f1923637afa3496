package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/hashicorp/raft"

	"github.com/udmg/gateway/fsm"
)

// raftFSM adapts the pure machine to raft and notes, on this node's clock,
// when another holder's lease entries were first seen: the new leader's
// wait starts from that moment.
type raftFSM Node

func (f *raftFSM) Apply(l *raft.Log) any {
	// Once applied, readers waiting for this entry (WaitApplied) go on.
	defer f.applied.set(l.Index)
	if l.Type != raft.LogCommand {
		return nil
	}
	r := f.machine.Apply(l.Data)
	if errors.Is(r.Err, fsm.ErrUnsupported) {
		// Skipping the entry would let this node diverge from the ones
		// that apply it: stop, and apply it after an upgrade.
		(*Node)(f).log.Error(fmt.Sprintf("log entry %d: %v", l.Index, r.Err))
		(*Node)(f).fenceExit(4)
		return r
	}
	switch r.Op {
	case fsm.OpLeaseAcquire, fsm.OpLeaseRenew, fsm.OpLeaseRelease:
		if r.Err == nil {
			(*Node)(f).observeLease(r.Lease, l.Index)
		}
		if r.Op == fsm.OpLeaseRenew {
			f.renewal.appliedNow(l.Index)
		}
	}
	return r
}

// arrivalLog wraps the Raft log store to note when lease entries of other
// holders reach this node. Followers learn that an entry is committed only
// with the next replicated entry (hashicorp/raft heartbeats carry no commit
// index), so they apply a renewal up to one Heartbeat after it arrived;
// counting from arrival, which is also after the holder proposed it, keeps
// the wait safe and a Heartbeat shorter. An entry that Raft replaces (a
// conflicting suffix truncated, then another entry stored at the same
// index) gets the later arrival: keeping the first would date the new
// entry before it was proposed.
type arrivalLog struct {
	raft.LogStore
	n *Node
}

// arrival is when the entry of one term at one index reached this node.
type arrival struct {
	term uint64
	at   time.Duration
}

// IsMonotonic passes on the store's (raft-wal's) need for a log without
// gaps: raft checks for it on the store it was given, this wrapper.
func (s arrivalLog) IsMonotonic() bool {
	m, ok := s.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (s arrivalLog) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s arrivalLog) StoreLogs(logs []*raft.Log) error {
	if s.n.renewal.storing(logs) {
		defer s.n.renewal.storedNow()
	}
	now := bootClock()
	for _, l := range logs {
		if l.Type != raft.LogCommand || !bytes.Contains(l.Data, []byte(`"op":"lease.`)) {
			continue
		}
		c, err := fsm.Decode(l.Data)
		if err != nil || c.Lease == nil || (c.Lease.Holder == s.n.cfg.NodeID && c.Lease.Session == s.n.session) {
			continue
		}
		s.n.leaseMu.Lock()
		if a, seen := s.n.arrivals[l.Index]; !seen || a.term != l.Term {
			s.n.arrivals[l.Index] = arrival{term: l.Term, at: now}
		}
		s.n.leaseMu.Unlock()
	}
	return s.LogStore.StoreLogs(logs)
}

// DeleteRange forgets the arrivals of the entries Raft removes: a truncated
// suffix's entries never apply, and what later fills their indexes arrives
// anew.
func (s arrivalLog) DeleteRange(lo, hi uint64) error {
	s.n.leaseMu.Lock()
	for i := range s.n.arrivals {
		if i >= lo && i <= hi {
			delete(s.n.arrivals, i)
		}
	}
	s.n.leaseMu.Unlock()
	return s.LogStore.DeleteRange(lo, hi)
}

// Snapshot freezes the state on raft's FSM goroutine; Persist encodes it
// off that goroutine (fsm.Frozen).
func (f *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	return snapshot{f.machine.Freeze()}, nil
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
	// Raft restores the newest snapshot of the store (at start-up, or
	// the one a leader just installed): the state is now at its index.
	if metas, err := f.snaps.List(); err == nil && len(metas) > 0 {
		f.applied.set(metas[0].Index)
	}
	// A restored lease has no arrival time; count it as seen now.
	(*Node)(f).observeLease(f.machine.Lease(), 0)
	return nil
}

type snapshot struct{ state fsm.Frozen }

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	b, err := s.state.Encode()
	if err != nil {
		sink.Cancel()
		return err
	}
	if _, err := sink.Write(b); err != nil {
		sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

func (snapshot) Release() {}

// observeLease tells the lease machine of the entry at index, which left
// lease l, dated by its arrival when known, else now (replayed at start-up
// or restored from a snapshot: later than it arrived, so the wait only
// grows).
func (n *Node) observeLease(l fsm.Lease, index uint64) {
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	at := bootClock()
	if a, ok := n.arrivals[index]; ok {
		at = a.at
	}
	for i := range n.arrivals {
		if i <= index {
			delete(n.arrivals, i)
		}
	}
	n.lease.observe(l, at)
}

// leaseDo runs one transition of the lease machine under leaseMu.
func leaseDo[T any](n *Node, f func(m *leaseMachine) T) T {
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	return f(n.lease)
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
	won := bootClock()
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
func (n *Node) leaderLoop(ctx context.Context, won time.Duration) {
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
		switch {
		case errors.Is(err, errSecretsKEK):
			// Logged once by checkSecrets.
		case errors.Is(err, errNotEligible):
			if !toldIneligible {
				n.log.Info("leading without a license slot; not taking the lease")
				toldIneligible = true
			}
		default:
			// Where the renewal's time went (renewaltrace.go).
			n.log.Warn("lease lost while leading; trying a new epoch", append([]any{"err", err}, n.renewal.attrs(bootClock())...)...)
		}
		select {
		case <-ctx.Done():
		case <-time.After(n.cfg.Heartbeat):
		}
	}
}

var (
	errLeaseExpired = errors.New("lease expired before renewal committed")
	errLeaseEnded   = errors.New("lease ended by shutdown")
)

// holdLease acquires the lease and drives the lease machine through one
// epoch: it waits until no earlier holder can be serving, runs the
// services, and fences them when the lease ends. The waiting and fencing
// happen on this goroutine, which never blocks on raft once the lease is
// acquired; renewals run on their own.
func (n *Node) holdLease(ctx context.Context, won time.Duration) error {
	if err := n.raft.Barrier(n.cfg.Deadline).Error(); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	n.reconcile()
	if !n.eligible() {
		n.handOver()
		return errNotEligible
	}
	if err := n.checkSecrets(); err != nil {
		// Taking an epoch it cannot serve would only make the next
		// holder wait: leadership goes to a node that can.
		n.handOver()
		return err
	}
	cur := n.machine.Lease()
	waitUntil := leaseDo(n, func(m *leaseMachine) time.Duration { return m.acquireWait(cur, won) })
	epoch := cur.Epoch + 1
	proposed := bootClock()
	err := n.apply(fsm.Command{Op: fsm.OpLeaseAcquire, At: time.Now(),
		Lease: &fsm.LeaseArgs{Holder: n.cfg.NodeID, Session: n.session, Epoch: epoch, Duration: n.cfg.Deadline, Grace: n.declaredGrace()}})
	if err != nil {
		return fmt.Errorf("acquire epoch %d: %w", epoch, err)
	}
	leaseDo(n, func(m *leaseMachine) any { m.acquired(epoch, proposed, waitUntil); return nil })
	n.log.Info("lease acquired", "epoch", epoch, "previous_holder", cur.Holder, "previous_released", cur.Released,
		"previous_clean", cur.Clean, "wait", max(0, waitUntil-bootClock()).Round(time.Millisecond))
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

	for {
		var act leaseAction
		var wake time.Duration
		var phase leasePhase
		leaseDo(n, func(m *leaseMachine) any {
			act = m.step(bootClock())
			wake, phase = m.next(), m.phase
			return nil
		})
		serving := phase == phaseActive
		switch act {
		case actLost:
			n.renewal.expired(bootClock())
			return errLeaseExpired
		case actFence:
			n.renewal.expired(bootClock())
			n.fence("lease expired")
			return errLeaseExpired
		case actActivate:
			if err := n.initCluster(epoch); err != nil {
				n.fence("initialisation failed")
				return err
			}
			if err := n.activate(); err != nil {
				n.fence("services failed to start")
				return err
			}
			continue
		}
		if phase != phaseAcquired && !serving {
			// Fenced by shutdown, or released: this epoch is over.
			return errLeaseEnded
		}
		d := wake - bootClock()
		if serving {
			// While serving, look again every HeartbeatCheck whether
			// the license still lets this node be ACTIVE.
			d = min(d, n.cfg.HeartbeatCheck)
		}
		t := time.NewTimer(max(d, time.Millisecond))
		select {
		case <-t.C:
			if serving && !n.eligible() {
				// A licensed node can serve again: hand over as on shutdown.
				leaseDo(n, (*leaseMachine).stopServing)
				n.fence("license slot needed by a licensed node")
				stopRenew()
				<-renewDone
				if err := n.release(); err != nil {
					n.log.Warn("lease release failed", "err", err)
				}
				n.handOver()
				return errNotEligible
			}
		case err := <-lost:
			t.Stop()
			if leaseDo(n, (*leaseMachine).lost) == actFence {
				n.fence("lease lost")
			}
			return err
		case <-ctx.Done():
			t.Stop()
			if leaseDo(n, (*leaseMachine).lost) == actFence {
				n.fence("leadership lost")
			}
			return ctx.Err()
		}
	}
}

// declaredGrace is the grace an acquire declares (Config.LeaseGrace): nil
// when nothing outlasts this node's leases, or when a voter would drop the
// field (command version 4 not applied by all); its successors then assume
// their UndeclaredGrace.
func (n *Node) declaredGrace() *time.Duration {
	if n.cfg.LeaseGrace == 0 && n.cfg.UndeclaredGrace == 0 {
		return nil
	}
	g := n.cfg.LeaseGrace
	if v, _ := n.writeVersion(); v < fsm.Needs(fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Grace: &g}}) {
		return nil
	}
	return &g
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
		proposed := bootClock()
		err := n.applyRenewal(fsm.Command{Op: fsm.OpLeaseRenew, At: time.Now(),
			Lease: &fsm.LeaseArgs{Holder: n.cfg.NodeID, Session: n.session, Epoch: epoch}})
		switch {
		case err == nil:
			leaseDo(n, func(m *leaseMachine) any { m.renewed(epoch, proposed, bootClock()); return nil })
			took := bootClock() - proposed
			n.lastRenewal.Store(&renewalTook{epoch: epoch, took: took})
			if n.cfg.OnRenewal != nil {
				n.cfg.OnRenewal(took)
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

// activate starts the services; the lease machine has found the wait over.
func (n *Node) activate() error {
	n.activeMu.Lock()
	defer n.activeMu.Unlock()
	if n.active.Load() || n.shuttingDown.Load() || !n.LeaseValid() {
		return nil
	}
	if n.cfg.Services != nil {
		if err := n.cfg.Services.Start(n.machine.State()); err != nil {
			n.stopServices("services failed to start")
			return fmt.Errorf("start services: %w", err)
		}
	}
	n.active.Store(true)
	n.publishMode("lease acquired")
	return nil
}

// fence stops serving: the lease machine must already have left Active
// (step, lost, stopServing or shutdown). Fence or die: if the services
// cannot be stopped, or not within fenceBound, the process exits non-zero
// and never releases, so that its successor waits the full lease.
func (n *Node) fence(reason string) {
	n.activeMu.Lock()
	defer n.activeMu.Unlock()
	if n.active.Load() {
		n.active.Store(false)
		if !n.stopServices(reason) {
			return
		}
	}
	leaseDo(n, func(m *leaseMachine) any { m.fenced(); return nil })
	n.publishMode(reason)
}

// stopServices stops the services within fenceBound or ends the process;
// false means the process is exiting (fenceExit returned, in tests).
func (n *Node) stopServices(reason string) bool {
	if n.cfg.Services == nil {
		return true
	}
	die := func(why string) {
		n.log.Error("fencing did not finish; exiting without releasing the lease", "why", why, "bound", fenceBound, "reason", reason)
		n.fenceExit(3)
	}
	watchdog := time.AfterFunc(fenceBound, func() {
		// Where the fence is stuck, for the operator's report: every
		// goroutine's stack on stderr, before the exit.
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		die("timed out")
	})
	err := n.cfg.Services.Stop()
	if !watchdog.Stop() {
		// The watchdog fired: the process is exiting.
		return false
	}
	if err != nil {
		die(err.Error())
		return false
	}
	return true
}
