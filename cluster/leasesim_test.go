package cluster

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/udmg/gateway/fsm"
)

// A deterministic simulation of the lease: the real lease machine
// (leasemachine.go) and the real replicated state machine (fsm) on every
// node, driven by randomized schedules of a fake Raft log and fake clocks.
// One seed is one schedule and replays exactly: a failing run prints
//
//	go test ./cluster -run TestLeaseSimulation -sim.seed=N -sim.trace
//
// The fake Raft keeps what the lease relies on and nothing more: one
// committed log; the leader's proposals commit in order, or are lost or
// committed by the next leader when leadership changes; a new leader has
// received every committed entry, each no earlier than it was proposed; a
// deposed leader learns of it late or never; entries reach the other nodes
// in order, each at its own pace. Every node's clock runs at its own rate
// within [1, 1+ε] of real time (only the ratio of two rates matters, and
// that stays within 1+ε) from its own origin. Nodes pause for any length
// (SIGSTOP, a stalled disk: they take no step while their clock runs on),
// die (kill -9, or a fence that fails), restart with a new session and no
// arrival times, and are told to shut down (SIGTERM) at any step. Each
// node's service address outlasts its lease by a grace of its own (its
// fence's slack, or the kernel's lifetime), which it declares with its
// acquire or, like an earlier release, leaves for the others to assume
// (simUndeclared); killed, paused or restarted, its address lives on that
// long, and ends early only when it fences (or starts again: vip.New
// removes a leftover address). The invariants, checked after every step:
// no two nodes serving at once, and no two addresses answered for at once.

var (
	simSchedules = flag.Int("sim.schedules", 0, "schedules for TestLeaseSimulation (0: 100000, or 5000 under -short or -race)")
	simSeed      = flag.Uint64("sim.seed", 0, "replay one schedule of TestLeaseSimulation")
	simTrace     = flag.Bool("sim.trace", false, "print every step of the replayed schedule")
)

const (
	simDeadline   = 2 * time.Second
	simHeartbeat  = 500 * time.Millisecond
	simSteps      = 300
	simUndeclared = 1500 * time.Millisecond // vip.Grace
)

// mutant switches on a known bug, for the tests that show the simulation
// finds it.
type mutant int

const (
	noMutant   mutant = iota
	oldRelease        // issue 11: a released lease owes no wait
	graceNone         // nodes whose address outlasts the lease declare nothing, and nothing is assumed
)

type simEntry struct {
	data     []byte
	node     int    // proposer
	session  string // proposer's session
	term     int
	proposed time.Duration // proposer's clock
	real     time.Duration // real time of the proposal
	wait     time.Duration // acquire: the proposer's waitUntil
}

type simNode struct {
	id, session string
	lm          *leaseMachine
	state       *fsm.Machine
	rate        int64 // clock runs at 1 + rate/simRateScale of real time
	origin      time.Duration
	up, paused  bool
	leader      bool // believes it leads
	term        int
	won         time.Duration
	recv        int // log entries received
	applied     int
	arrived     []time.Duration // by log index
	fencing     bool
	closing     bool // SIGTERM: releases once fenced, then exits
	restarts    int
	// grace is how long the node's address outlasts its lease; declares
	// says whether its acquires carry it. effectUntil is when, on its
	// clock, its address stops being answered for.
	grace       time.Duration
	declares    bool
	effectUntil time.Duration
}

// simRateScale makes clock rates exact integers: rate ∈ [0, skew·scale].
const simRateScale = 1_000_000

type sim struct {
	t       *testing.T
	rnd     *rand.Rand
	trace   *strings.Builder
	now     time.Duration // real time
	nodes   []*simNode
	log     []simEntry
	pending []simEntry
	term    int
	leader  int // current leader, -1 none
	mut     mutant
}

func (s *sim) clock(n *simNode) time.Duration {
	return n.origin + s.now + s.now*time.Duration(n.rate)/simRateScale
}

func (s *sim) logf(format string, args ...any) {
	if s.trace != nil {
		fmt.Fprintf(s.trace, "%8.3fs ", s.now.Seconds())
		fmt.Fprintf(s.trace, format, args...)
		s.trace.WriteByte('\n')
	}
}

func newSim(t *testing.T, seed uint64, mut mutant, trace bool) *sim {
	s := &sim{t: t, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), leader: -1, mut: mut}
	if trace {
		s.trace = &strings.Builder{}
	}
	n := 3 + s.rnd.IntN(3)
	for i := range n {
		node := &simNode{id: fmt.Sprintf("n%d", i),
			rate:     s.rnd.Int64N(int64(clockSkew*simRateScale) + 1),
			origin:   time.Duration(s.rnd.Int64N(int64(time.Hour))),
			grace:    []time.Duration{0, 100 * time.Millisecond, 700 * time.Millisecond, simUndeclared}[s.rnd.IntN(4)],
			declares: s.rnd.IntN(2) == 0 && mut != graceNone}
		s.boot(node)
		s.nodes = append(s.nodes, node)
	}
	return s
}

func (s *sim) boot(n *simNode) {
	n.restarts++
	n.session = fmt.Sprintf("%s.%d", n.id, n.restarts)
	n.lm = newLeaseMachine(n.id, n.session, simDeadline, clockSkew)
	n.lm.oldRelease = s.mut == oldRelease
	if s.mut != graceNone {
		n.lm.grace = simUndeclared
	}
	n.effectUntil = min(n.effectUntil, s.clock(n))
	n.state = fsm.New()
	n.up, n.paused, n.leader, n.fencing, n.closing = true, false, false, false, false
	n.recv, n.applied, n.arrived = 0, 0, nil
}

func (s *sim) propose(n *simNode, c fsm.Command, wait time.Duration) {
	b, err := fsm.Encode(c)
	if err != nil {
		s.t.Fatal(err)
	}
	i := s.index(n)
	s.pending = append(s.pending, simEntry{data: b, node: i, session: n.session, term: n.term,
		proposed: s.clock(n), real: s.now, wait: wait})
}

func (s *sim) index(n *simNode) int {
	for i, m := range s.nodes {
		if m == n {
			return i
		}
	}
	panic("unknown node")
}

func (s *sim) commit(e simEntry) {
	s.log = append(s.log, e)
}

// elect makes node i the leader of a new term. Pending proposals of the
// terms that may still commit are committed as a prefix, the rest lost;
// the new leader has received the whole log.
func (s *sim) elect(i int) {
	committed := s.commitPrefix(s.pending)
	s.pending = nil
	s.term++
	n := s.nodes[i]
	s.receiveAll(n)
	n.leader, n.term, n.won = true, s.term, s.clock(n)
	s.leader = i
	s.logf("%s elected, term %d (committed %d pending)", n.id, s.term, committed)
}

// commitPrefix commits a random prefix of pending (the entries a new
// leader's log holds), each no older than the log's last term, and says
// how many.
func (s *sim) commitPrefix(pending []simEntry) int {
	lastTerm := 0
	if len(s.log) > 0 {
		lastTerm = s.log[len(s.log)-1].term
	}
	committed := 0
	for _, e := range pending[:s.rnd.IntN(len(pending)+1)] {
		if e.term >= lastTerm {
			s.commit(e)
			lastTerm = e.term
			committed++
		}
	}
	return committed
}

// barrier is the leader's raft.Barrier before an acquire: an entry of its
// term commits, and with it every entry before it in its log, its own
// pending ones and those of earlier terms it holds (a prefix); an entry of
// an earlier term it does not hold can never commit after it. Without
// this, a deposed leader's renewal could commit after the acquire whose
// wait never saw it: a history Raft does not allow.
func (s *sim) barrier(n *simNode) {
	var older, own []simEntry
	for _, e := range s.pending {
		if e.term < s.term {
			older = append(older, e)
		} else {
			own = append(own, e)
		}
	}
	s.commitPrefix(older)
	for _, e := range own {
		s.commit(e)
	}
	s.pending = nil
	s.receiveAll(n)
}

// receiveAll has n receive the whole log: entries it had not received
// reached it at some moment between their proposal and now, the earliest
// moments being the hardest case.
func (s *sim) receiveAll(n *simNode) {
	for n.recv < len(s.log) {
		e := s.log[n.recv]
		lo := max(e.real, s.lastArrivalReal(n))
		at := lo + time.Duration(s.rnd.Int64N(int64(s.now-lo)+1))
		n.arrived = append(n.arrived, n.origin+at+at*time.Duration(n.rate)/simRateScale)
		n.recv++
	}
}

func (s *sim) lastArrivalReal(n *simNode) time.Duration {
	if n.recv == 0 {
		return 0
	}
	// Invert the node's clock for the last arrival (good enough: entries
	// arrive in order, so only a lower bound is needed).
	a := n.arrived[n.recv-1] - n.origin
	return a * simRateScale / (simRateScale + time.Duration(n.rate))
}

func (s *sim) apply(n *simNode) {
	e := s.log[n.applied]
	arrived := n.arrived[n.applied]
	n.applied++
	r := n.state.Apply(e.data)
	if r.Err != nil {
		return
	}
	switch r.Op {
	case fsm.OpLeaseAcquire, fsm.OpLeaseRenew, fsm.OpLeaseRelease:
	default:
		return
	}
	own := e.node == s.index(n) && e.session == n.session
	if !own {
		n.lm.observe(r.Lease, arrived)
		return
	}
	// The proposer learns its result only while it still believes it
	// leads (the future of a deposed leader fails).
	if !n.leader {
		return
	}
	switch r.Op {
	case fsm.OpLeaseAcquire:
		if n.lm.phase == phaseIdle && !n.closing {
			n.lm.acquired(r.Lease.Epoch, e.proposed, e.wait)
			s.logf("%s acquired epoch %d, wait %v", n.id, r.Lease.Epoch, max(0, e.wait-s.clock(n)))
		}
	case fsm.OpLeaseRenew:
		n.lm.renewed(r.Lease.Epoch, e.proposed, s.clock(n))
	}
}

func (s *sim) do(n *simNode, a leaseAction) {
	switch a {
	case actActivate:
		s.logf("%s ACTIVE epoch %d", n.id, n.lm.epoch)
	case actFence:
		n.fencing = true
		s.logf("%s fencing epoch %d", n.id, n.lm.epoch)
	case actLost:
		s.logf("%s lost epoch %d while waiting", n.id, n.lm.epoch)
	}
}

// step takes one random action.
func (s *sim) step() {
	live := []*simNode{}
	for _, n := range s.nodes {
		if n.up && !n.paused {
			live = append(live, n)
		}
	}
	pick := func() *simNode {
		if len(live) == 0 {
			return nil
		}
		return live[s.rnd.IntN(len(live))]
	}
	switch k := s.rnd.IntN(100); {
	case k < 10:
		s.now += time.Duration(s.rnd.Int64N(int64(simDeadline / 8)))
	case k < 16:
		if n := pick(); n != nil {
			s.elect(s.index(n))
		}
	case k < 20:
		// A deposed leader hears of it.
		for _, n := range live {
			if n.leader && s.leader != s.index(n) {
				n.leader = false
				s.do(n, n.lm.lost())
				break
			}
		}
	case k < 32:
		// A node that believes it leads proposes: acquire after a
		// barrier (which applies the whole log), or renew.
		var leaders []*simNode
		for _, n := range live {
			if n.leader && !n.closing {
				leaders = append(leaders, n)
			}
		}
		if len(leaders) == 0 {
			return
		}
		n := leaders[s.rnd.IntN(len(leaders))]
		switch n.lm.phase {
		case phaseIdle:
			if s.leader == s.index(n) && !n.fencing {
				s.barrier(n)
				for n.applied < n.recv {
					s.apply(n)
				}
				cur := n.state.Lease()
				wait := n.lm.acquireWait(cur, n.won)
				var grace *time.Duration
				if n.declares {
					grace = &n.grace
				}
				s.propose(n, fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: n.id, Session: n.session,
					Epoch: cur.Epoch + 1, Duration: simDeadline, Grace: grace}}, wait)
				s.logf("%s proposes acquire epoch %d after %s's (released=%v clean=%v), wait %v", n.id, cur.Epoch+1,
					cur.Holder, cur.Released, cur.Clean, max(0, wait-s.clock(n)))
			}
		case phaseAcquired, phaseActive:
			s.propose(n, fsm.Command{Op: fsm.OpLeaseRenew, Lease: &fsm.LeaseArgs{Holder: n.id, Session: n.session, Epoch: n.lm.epoch}}, 0)
		}
	case k < 44:
		// The current leader's oldest proposal commits.
		for i, e := range s.pending {
			if e.term == s.term && s.leader >= 0 && e.node == s.leader {
				s.commit(e)
				s.pending = append(s.pending[:i:i], s.pending[i+1:]...)
				break
			}
		}
	case k < 56:
		if n := pick(); n != nil && n.recv < len(s.log) {
			n.arrived = append(n.arrived, s.clock(n))
			n.recv++
		}
	case k < 68:
		if n := pick(); n != nil && n.applied < n.recv {
			s.apply(n)
		}
	case k < 82:
		if n := pick(); n != nil {
			s.do(n, n.lm.step(s.clock(n)))
		}
	case k < 89:
		// A fence completes, or fails and the process dies.
		if n := pick(); n != nil && n.fencing {
			n.fencing = false
			if s.rnd.IntN(4) == 0 {
				s.logf("%s fence failed: exits", n.id)
				s.kill(n)
				return
			}
			n.lm.fenced()
			n.effectUntil = min(n.effectUntil, s.clock(n)) // Drop: fence closed, address removed
			s.logf("%s fenced", n.id)
		}
	case k < 91:
		n := s.nodes[s.rnd.IntN(len(s.nodes))]
		if n.up {
			n.paused = !n.paused
			s.logf("%s paused=%v", n.id, n.paused)
		}
	case k < 93:
		if n := pick(); n != nil {
			s.logf("%s killed", n.id)
			s.kill(n)
		}
	case k < 95:
		for _, n := range s.nodes {
			if !n.up {
				s.boot(n)
				s.logf("%s restarted", n.id)
				break
			}
		}
	default:
		if n := pick(); n != nil && !n.closing {
			n.closing = true
			s.logf("%s SIGTERM", n.id)
			s.do(n, n.lm.shutdown())
		}
	}
	// A node shutting down releases once fenced (if it leads), hands
	// leadership over and exits.
	for _, n := range live {
		if n.closing && !n.fencing && n.up {
			if n.leader {
				if epoch, clean, ok := n.lm.release(); ok {
					s.propose(n, fsm.Command{Op: fsm.OpLeaseRelease, Lease: &fsm.LeaseArgs{Holder: n.id, Session: n.session,
						Epoch: epoch, Clean: clean}}, 0)
					s.logf("%s releases epoch %d clean=%v", n.id, epoch, clean)
				}
				if s.leader == s.index(n) && s.rnd.IntN(2) == 0 {
					// Leadership transfer: the next leader commits what
					// the old one had proposed, or some of it.
					if o := s.nodes[s.rnd.IntN(len(s.nodes))]; o != n && o.up {
						s.elect(s.index(o))
					}
				}
			}
			s.logf("%s exits", n.id)
			s.kill(n)
		}
	}
}

func (s *sim) kill(n *simNode) {
	n.up, n.leader, n.fencing, n.paused = false, false, false, false
	if s.leader == s.index(n) {
		s.leader = -1
	}
}

// check fails the schedule when two nodes serve, or two addresses are
// answered for, at this instant.
func (s *sim) check() error {
	var serving, answering []string
	for _, n := range s.nodes {
		if n.up && n.lm.serving(s.clock(n)) {
			serving = append(serving, fmt.Sprintf("%s(epoch %d, %v left)", n.id, n.lm.epoch, n.lm.expiry-s.clock(n)))
			n.effectUntil = max(n.effectUntil, n.lm.expiry+n.grace)
		}
		if s.clock(n) < n.effectUntil {
			answering = append(answering, fmt.Sprintf("%s(grace %v declared %v, %v left)", n.id, n.grace, n.declares, n.effectUntil-s.clock(n)))
		}
	}
	if len(serving) > 1 {
		return fmt.Errorf("at %v two nodes serve: %s", s.now, strings.Join(serving, ", "))
	}
	if len(answering) > 1 {
		return fmt.Errorf("at %v two nodes answer for the service address: %s", s.now, strings.Join(answering, ", "))
	}
	return nil
}

func runSchedule(t *testing.T, seed uint64, mut mutant, trace bool) (err error, steps int, log string) {
	s := newSim(t, seed, mut, trace)
	for i := range simSteps {
		s.step()
		if err := s.check(); err != nil {
			if s.trace != nil {
				return err, i, s.trace.String()
			}
			return err, i, ""
		}
	}
	if s.trace != nil {
		return nil, simSteps, s.trace.String()
	}
	return nil, simSteps, ""
}

func TestLeaseSimulation(t *testing.T) {
	if *simSeed != 0 {
		err, _, trace := runSchedule(t, *simSeed, noMutant, *simTrace)
		t.Log("\n" + trace)
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	n := *simSchedules
	if n == 0 {
		n = 100_000
		if testing.Short() || raceEnabled {
			n = 5_000
		}
	}
	start := time.Now()
	base := uint64(time.Now().UnixNano())
	served := 0
	for i := range n {
		seed := base + uint64(i)
		err, _, _ := runSchedule(t, seed, noMutant, false)
		if err != nil {
			t.Fatalf("schedule seed %d: %v\nreplay: go test ./cluster -run 'TestLeaseSimulation$' -sim.seed=%d -sim.trace -v", seed, err, seed)
		}
		served++
	}
	el := time.Since(start)
	t.Logf("%d schedules of %d steps, 3-5 nodes, in %v (%.0f schedules/s)", served, simSteps, el.Round(time.Millisecond), float64(served)/el.Seconds())
}

// The simulation must find the overlap of issue 11 when the old release
// rule is switched back on, and the two addresses answered for at once
// when a node's address outlasts its lease unknown to its successors;
// otherwise it proves nothing.
func TestLeaseSimulationFindsMutants(t *testing.T) {
	for _, m := range []struct {
		name string
		mut  mutant
	}{{"old release rule", oldRelease}, {"grace neither declared nor assumed", graceNone}} {
		t.Run(m.name, func(t *testing.T) {
			base := uint64(time.Now().UnixNano())
			for i := range 200_000 {
				seed := base + uint64(i)
				if err, _, _ := runSchedule(t, seed, m.mut, false); err != nil {
					_, _, trace := runSchedule(t, seed, m.mut, true)
					lines := strings.Split(strings.TrimSpace(trace), "\n")
					t.Logf("%s: overlap after %d schedules (seed %d): %v\nlast steps:\n%s", m.name, i+1, seed, err,
						strings.Join(lines[max(0, len(lines)-25):], "\n"))
					return
				}
			}
			t.Fatalf("the simulation did not find the overlap of the %s in 200000 schedules", m.name)
		})
	}
}
