package cluster

import (
	"time"

	"github.com/udmg/gateway/fsm"
)

// This file is the lease protocol of ARCHITECTURE.md ("The lease"), as one
// state machine with no goroutines, no Raft and no clock of its own: the
// driver (lease.go) feeds it what Raft and the clock say, and does what it
// answers. The simulation (leasesim_test.go) drives the very same code with
// a fake clock and a fake log, and model/lease.pml checks the protocol.
//
//	Idle ──acquired──▶ Acquired(waitUntil) ──step: now ≥ waitUntil──▶ Active
//	  ▲                    │ step: now ≥ expiry / leadership lost        │ step: now ≥ expiry,
//	  │                    ▼                                             │ leadership lost, shutdown
//	  └──────release──── Idle                       Fenced ◀──fenced── Fencing
//	                                                  │ release (clean)
//	                                                  ▼
//	                                                 Idle
//
// Times are instants of the lease clock (CLOCK_BOOTTIME, so a suspended
// host's lease runs out while it sleeps).

// leasePhase is where this process stands with the lease.
type leasePhase int

const (
	phaseIdle     leasePhase = iota // holding nothing
	phaseAcquired                   // acquire committed; waiting until no earlier holder can be serving
	phaseActive                     // serving: services may run while now < expiry
	phaseFencing                    // stopping the services; serving no more
	phaseFenced                     // services stopped after serving; the lease may be released cleanly
)

func (p leasePhase) String() string {
	return [...]string{"Idle", "Acquired", "Active", "Fencing", "Fenced"}[p]
}

// leaseAction is what the driver must do after a step.
type leaseAction int

const (
	actNone     leaseAction = iota
	actActivate             // the wait is over: start the services
	actFence                // stop the services, then report fenced
	actLost                 // the lease expired before the wait was over: acquire again
)

// leaseMachine is one process's view of the lease. It is not safe for
// concurrent use; the Node guards it with leaseMu.
type leaseMachine struct {
	self, session string        // whose entries are this process's own
	deadline      time.Duration // D: how long a lease lasts after its proposal
	skew          float64       // ε: how much two clocks may disagree on a length
	// grace is how long a holder's effects may outlast its lease (the
	// service address the kernel drops by itself, at its own granularity)
	// when the holder declared nothing (fsm.Lease.Grace): successors wait
	// that much longer.
	grace time.Duration

	// oldRelease switches the bug of issue 11 back on (a released lease,
	// or this process's own, owes no wait): only the simulation's mutant
	// test sets it, to show that the simulation finds the overlap.
	oldRelease bool

	phase     leasePhase
	closing   bool // shutting down: never activate again
	epoch     uint64
	expiry    time.Duration // the lease ends here unless renewed
	waitUntil time.Duration // Acquired: serve from here on
	// waited is the last epoch whose wait this process completed; with a
	// completed fence it is what makes its release clean.
	waited uint64
	// owed is the instant after which no other holder whose entry this
	// process has seen can still be serving: every such entry was proposed
	// before it arrived here, and its holder's lease ended D after that on
	// its own clock. Zero: none seen since this process started.
	owed time.Duration
}

func newLeaseMachine(self, session string, deadline time.Duration, skew float64) *leaseMachine {
	return &leaseMachine{self: self, session: session, deadline: deadline, skew: skew}
}

// stretch is how long after its proposal a lease entry of l's holder may
// still have effects, as this node's clock may measure it at most: the
// lease and then the grace its holder declared (or, when it declared none,
// this node's guess), both measured on the holder's clock, so both
// stretched by the skew (the model's GRACE_UNSTRETCHED mutant stretches
// the lease alone, and overlaps).
func (m *leaseMachine) stretch(l fsm.Lease) time.Duration {
	grace := m.grace
	if l.Grace != nil {
		grace = max(0, *l.Grace)
	}
	return time.Duration(float64(max(l.Duration, m.deadline)+grace) * (1 + m.skew))
}

func (m *leaseMachine) mine(l fsm.Lease) bool {
	return l.Holder == m.self && l.Session == m.session
}

// observe is told of every lease entry this process applies: l is the lease
// after the entry, arrived the instant the entry reached this node (or
// later, when that is unknown). Another holder's entry, a release
// included, may be followed by serving until D after it was proposed.
func (m *leaseMachine) observe(l fsm.Lease, arrived time.Duration) {
	if l.Holder == "" || m.mine(l) {
		return
	}
	m.owed = max(m.owed, arrived+m.stretch(l))
}

// acquireWait is the instant from which this process, about to acquire the
// lease after cur, may serve. won is when it won the election, the
// fallback when it has seen no entry of another holder. The wait is owed
// to every node that may still be serving; it is skipped only when the log
// proves nobody can be: the lease was never held, or its last holder
// released it cleanly, or it is this process's own lease whose wait it
// completed (it fenced before it could lead again).
func (m *leaseMachine) acquireWait(cur fsm.Lease, won time.Duration) time.Duration {
	switch {
	case cur.Holder == "":
		return 0
	case cur.Released && (cur.Clean || m.oldRelease):
		return 0
	case m.mine(cur) && (cur.Epoch == m.waited || m.oldRelease):
		return 0
	}
	if m.owed == 0 {
		return won + m.stretch(cur)
	}
	return m.owed
}

// acquired records this process's committed acquire of epoch, proposed at
// the instant proposed.
func (m *leaseMachine) acquired(epoch uint64, proposed, waitUntil time.Duration) {
	m.phase, m.epoch = phaseAcquired, epoch
	m.expiry, m.waitUntil = proposed+m.deadline, waitUntil
}

// renewed records, at now, a committed renewal of epoch proposed at
// proposed: the lease then lasts D from the proposal, never from the
// commit. A lease that has lapsed stays lapsed: step fences it.
func (m *leaseMachine) renewed(epoch uint64, proposed, now time.Duration) {
	if epoch == m.epoch && (m.phase == phaseAcquired || m.phase == phaseActive) && now < m.expiry {
		m.expiry = max(m.expiry, proposed+m.deadline)
	}
}

// step moves the machine on to now and says what the driver must do.
func (m *leaseMachine) step(now time.Duration) leaseAction {
	switch m.phase {
	case phaseAcquired:
		if now >= m.expiry {
			m.phase = phaseIdle
			return actLost
		}
		if now >= m.waitUntil && !m.closing {
			m.phase, m.waited = phaseActive, m.epoch
			return actActivate
		}
	case phaseActive:
		if now >= m.expiry || m.closing {
			m.phase = phaseFencing
			return actFence
		}
	}
	return actNone
}

// next is when step has something to do again (zero: nothing is timed).
func (m *leaseMachine) next() time.Duration {
	switch m.phase {
	case phaseAcquired:
		return min(m.expiry, m.waitUntil)
	case phaseActive:
		return m.expiry
	}
	return 0
}

// lost is told when leadership ends or a renewal is refused (the lease is
// gone from the log): a waiting holder gives up, as it never served; a
// serving one must fence.
func (m *leaseMachine) lost() leaseAction {
	switch m.phase {
	case phaseAcquired:
		m.phase = phaseIdle
	case phaseActive:
		m.phase = phaseFencing
		return actFence
	}
	return actNone
}

// stopServing ends serving while the lease is still held (a license slot
// needed elsewhere): the holder fences, and may then release cleanly.
func (m *leaseMachine) stopServing() leaseAction {
	if m.phase == phaseActive {
		m.phase = phaseFencing
		return actFence
	}
	return actNone
}

// shutdown stops this process from ever activating again; a serving one
// must fence.
func (m *leaseMachine) shutdown() leaseAction {
	m.closing = true
	return m.stopServing()
}

// fenced is told once the services are stopped (and nothing else: a fence
// that fails ends the process instead).
func (m *leaseMachine) fenced() {
	if m.phase == phaseFencing || m.phase == phaseActive {
		m.phase = phaseFenced
	}
}

// release says whether this process may release its lease now, and whether
// the release is clean. It may not while serving or fencing (fence or die:
// a failed fence never releases). The machine is then Idle.
func (m *leaseMachine) release() (epoch uint64, clean, ok bool) {
	switch m.phase {
	case phaseAcquired, phaseFenced:
		epoch, clean = m.epoch, m.phase == phaseFenced && m.waited == m.epoch
		m.phase = phaseIdle
		return epoch, clean, true
	}
	return 0, false, false
}

// serving reports whether this process may serve at now: Active, and its
// lease not expired on its own clock. Listeners ask before every accept and
// every write.
func (m *leaseMachine) serving(now time.Duration) bool {
	return m.phase == phaseActive && now < m.expiry
}

// remaining is the epoch held and what is left of it at now (0 when not
// serving), for status and metrics.
func (m *leaseMachine) remaining(now time.Duration) (uint64, time.Duration) {
	if m.phase != phaseActive && m.phase != phaseAcquired {
		return m.epoch, 0
	}
	return m.epoch, max(0, m.expiry-now)
}
