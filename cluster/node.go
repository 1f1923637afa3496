// Package cluster turns a set of gateway processes into one service with a
// single ACTIVE node. Nodes discover each other by gossip (memberlist), agree
// through one Raft group, and the Raft leader becomes ACTIVE only after it has
// committed a lease entry and waited out any previous holder's lease. The
// node fences itself on its own monotonic clock, independently of Raft's
// goroutines, so that two nodes never serve at once.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/udmg/gateway/fsm"
)

// Config is the typed configuration of one node; cmd/udmg-server builds it
// from server.ini.
type Config struct {
	NodeID  string
	DataDir string

	RaftBind      string // host:port to listen on for Raft
	GossipBind    string // host:port to listen on for memberlist (TCP and UDP)
	AdvertiseHost string // address peers dial; resolved by ResolveAdvertise
	Join          []string
	// BootstrapExpect is how many fresh nodes must see each other before
	// they bootstrap a new cluster together.
	BootstrapExpect int
	// Identity authenticates this node to its peers (mutual TLS on the
	// Raft port) and holds the gossip keys; see LoadIdentity. Nil: an
	// identity of this process alone (in-process tests).
	Identity *Identity

	Heartbeat      time.Duration // lease renewal period h
	Deadline       time.Duration // lease duration D
	HeartbeatCheck time.Duration // status refresh period; Raft timeouts derive from it

	Hostname  string
	AdminHost string
	AdminPort int

	// InitialUser and InitialPassword create the first administrator when
	// the cluster is initialised; an empty password is generated and
	// logged once.
	InitialUser, InitialPassword string

	// License is this node's verified license file (nil: none configured);
	// LicenseRefused says a configured file was invalid, which keeps this
	// node UNLICENSED.
	License        []byte
	LicenseRefused bool
	// OnOffline is told, on the leader, which nodes it has just marked
	// OFFLINE (dead to gossip, or the ACTIVE node it replaced).
	OnOffline func(ids []string, at time.Time)
	// Secrets holds this node's key-encryption key: the cluster's data key
	// is created with it at bootstrap (and the SSH host key sealed under
	// it), moved in from a previous release's key file, and checked before
	// this node becomes ACTIVE (init.go); nil keeps the host key in clear
	// and the state without a data key (tests).
	Secrets SecretsKeeper
	// OnRenewal is told, on the holder, how long each committed lease
	// renewal took from proposal to commit: how close the node runs to
	// Deadline. It runs on the renewal goroutine and must return at once.
	OnRenewal func(time.Duration)
	// OnLoginFailure is told of each failed login another node reported
	// (ShareLoginFailure); it runs on a gossip goroutine and must return
	// at once.
	OnLoginFailure func(addr, account string)
	// LeaseGrace is how long this node's effects may outlast its lease on
	// its own clock (its service address, until its fence or the address's
	// kernel lifetime ends): declared with each acquire (fsm.LeaseArgs
	// Grace), so that its successors wait that much longer.
	// UndeclaredGrace is what this node assumes of a holder that declared
	// none (an earlier release, or a cluster not all on command version
	// 4). Both zero: nothing outlasts a lease, nothing is declared.
	LeaseGrace, UndeclaredGrace time.Duration

	// Services is what only the ACTIVE node runs.
	Services Services
	Logger   *slog.Logger
}

// Services is started once the lease is safely held and stopped when it is
// lost. Stop must close every session before returning.
type Services interface {
	Start(st fsm.State) error
	Stop() error
}

// clockSkew is ε of the lease wait: the fraction by which two nodes' clocks
// may disagree on the length of a lease. The lease clock (CLOCK_BOOTTIME)
// runs at the oscillator's rate as NTP disciplines it, a correction the
// kernel bounds at ±500 ppm, so two nodes disagree by at most about 0.1 %;
// 1 % leaves ten times that. (It was 5 % until the kill -9 failover median
// was found at 2.04 s, over its 2 s goal: every 1 % is 20 ms of it.) A pause
// of the whole machine (SIGSTOP, a VM frozen) is no rate error: the paused
// holder finds its lease expired on its own clock when it wakes.
const clockSkew = 0.01

// fenceBound is how long fencing may take before the watchdog ends the
// process: a node that cannot stop serving must not stay alive.
const fenceBound = 10 * time.Second

// Node is one running gateway member.
type Node struct {
	cfg     Config
	log     *slog.Logger
	session string // distinguishes this run from earlier runs of the same node
	started time.Time

	machine    *fsm.Machine
	raft       *raft.Raft
	store      *logStore
	trans      *raft.NetworkTransport
	stream     *streamLayer
	proofs     proofs
	gossip     *memberlist.Memberlist
	logins     atomic.Pointer[memberlist.TransmitLimitedQueue] // failed logins to gossip (logins.go)
	loginSeq   atomic.Uint64
	loginsSeen loginDedup
	notifyCh   chan bool
	snaps      raft.SnapshotStore // to date a restored snapshot (applied)
	applied    appliedIndex       // what the machine has applied (applied.go)
	hasState   atomic.Bool
	raftAddr   string
	gossipAddr string

	modes broker

	// The lease (leasemachine.go), on the lease clock (CLOCK_BOOTTIME),
	// and when other holders' lease entries not yet applied arrived.
	leaseMu  sync.Mutex
	lease    *leaseMachine
	arrivals map[uint64]arrival
	renewal  renewalTrace // where renewals spend their time (renewaltrace.go)

	reconcileMu sync.Mutex

	activeMu   sync.Mutex
	active     atomic.Bool  // services running under the lease
	lastActive atomic.Int64 // unix nanos of the last moment seen ACTIVE
	// lastRenewal is the last committed renewal of this node's lease:
	// its epoch and how long it took from proposal to commit.
	lastRenewal atomic.Pointer[renewalTook]

	shuttingDown atomic.Bool
	// secretsRefused is set once this node has logged that its
	// key-encryption key does not open the cluster's (init.go).
	secretsRefused atomic.Bool
	ctx            context.Context
	cancel         context.CancelFunc
	wg             sync.WaitGroup
	fenceExit      func(code int) // os.Exit, replaced in tests
}

// Start opens the node's stores and sockets and joins or forms the cluster.
// It returns once Raft and gossip are running; becoming ACTIVE happens later.
func Start(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Identity == nil {
		// In-process tests: an identity of this process alone, which no
		// other node trusts.
		id, err := LoadIdentity(IdentityConfig{NodeID: cfg.NodeID, Name: "udmg"})
		if err != nil {
			return nil, err
		}
		cfg.Identity = id
	}
	sess := make([]byte, 8)
	if _, err := rand.Read(sess); err != nil {
		return nil, fmt.Errorf("session id: %w", err)
	}
	n := &Node{
		cfg:       cfg,
		log:       cfg.Logger.With("node", cfg.NodeID),
		session:   hex.EncodeToString(sess),
		started:   time.Now(),
		machine:   fsm.New(),
		notifyCh:  make(chan bool, 16),
		fenceExit: os.Exit,
		arrivals:  map[uint64]arrival{},
	}
	n.lease = newLeaseMachine(cfg.NodeID, n.session, cfg.Deadline, clockSkew)
	n.lease.grace = cfg.UndeclaredGrace
	n.modes.last = Offline
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.startRaft(); err != nil {
		n.closeStores()
		return nil, err
	}
	if err := n.startGossip(); err != nil {
		n.raft.Shutdown().Error()
		n.closeStores()
		return nil, err
	}
	n.log.Info("node started", "identity", cfg.Identity.Source, "raft", n.raftAddr, "gossip", n.gossip.LocalNode().Address(), "existing_state", n.hasState.Load())
	n.spawn(n.monitorLeadership)
	n.spawn(n.watchMode)
	n.spawn(n.joinLoop)
	if !n.hasState.Load() {
		n.spawn(n.bootstrapLoop)
	}
	return n, nil
}

func (n *Node) spawn(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// raftTimeouts derives Raft's timers from HeartbeatCheck: a follower starts
// an election after c/2 without hearing from the leader, so an election is
// well under way before a dead holder's lease (D ≥ 3h) runs out.
func raftTimeouts(c time.Duration) (heartbeat, election, leaderLease time.Duration) {
	t := c / 2
	return t, t, t
}

func (n *Node) startRaft() error {
	if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.NodeID)
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = raftTimeouts(n.cfg.HeartbeatCheck)
	rc.NotifyCh = n.notifyCh
	rc.Logger = newHCLogger(n.log, "raft")
	// Lease renewals are small and frequent: snapshot often enough that a
	// restarted node replays seconds, not hours, of renewals.
	rc.SnapshotThreshold = 4096
	rc.TrailingLogs = 2048
	// Propose returns once its entry is in Raft's apply channel: buffered,
	// a proposal does not wait for the leader loop to finish the log
	// write of the batch before it.
	rc.BatchApplyCh = true
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raft settings from [controller] HeartbeatCheck: %w", err)
	}

	store, err := openLogStore(n.cfg.DataDir, n.log)
	if err != nil {
		return err
	}
	n.store = store
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, 2, newHCLogger(n.log, "snapshot"))
	if err != nil {
		return fmt.Errorf("snapshot store: %w", err)
	}
	n.snaps = snaps
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}
	n.hasState.Store(has)

	_, port, err := net.SplitHostPort(n.cfg.RaftBind)
	if err != nil {
		return fmt.Errorf("raft address %q: %w", n.cfg.RaftBind, err)
	}
	n.raftAddr = net.JoinHostPort(n.cfg.AdvertiseHost, port)
	adv, err := net.ResolveTCPAddr("tcp", n.raftAddr)
	if err != nil {
		return fmt.Errorf("raft advertise address %q: %w", n.raftAddr, err)
	}
	stream, err := newStreamLayer(n.cfg.RaftBind, adv, n.cfg.Identity, n.log)
	if err != nil {
		return fmt.Errorf("listen raft %s: %w", n.cfg.RaftBind, err)
	}
	n.stream = stream
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 5 * time.Second, Logger: newHCLogger(n.log, "raft-net"),
		// No pipelined replication: hashicorp/raft's pipeline can deadlock
		// on shutdown (a replication goroutine parked in
		// netPipeline.AppendEntries while decodeResponses waits on doneCh;
		// raft#612), which the chaos campaign saw as nodes hanging on
		// SIGTERM. Synchronous AppendEntries cost nothing measurable at
		// a renewal every Heartbeat.
		MaxRPCsInFlight: 1,
	})
	n.trans = trans
	r, err := raft.NewRaft(rc, (*raftFSM)(n), arrivalLog{store, n}, store, snaps, trans)
	if err != nil {
		trans.Close()
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	return nil
}

func (n *Node) closeStores() {
	if n.trans != nil {
		n.trans.Close()
	}
	if n.store != nil {
		n.store.Close()
	}
}

// ID is the node's stable identity.
func (n *Node) ID() string { return n.cfg.NodeID }

// StartedAt is when this process started, for uptime reports.
func (n *Node) StartedAt() time.Time { return n.started }

// LastActive is the last moment this process was seen ACTIVE (zero if never).
func (n *Node) LastActive() time.Time {
	if ns := n.lastActive.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// State is a copy of the replicated state as this node has applied it.
func (n *Node) State() fsm.State { return n.machine.State() }

// Read runs f on the replicated state without copying it (fsm.Machine.Read):
// f must return quickly and keep nothing it reaches.
func (n *Node) Read(f func(s *fsm.State)) { n.machine.Read(f) }

// Account, Transfer and Servers look single objects up in the replicated
// state without copying the rest (fsm.Machine's lookups): logins, engine
// ticks and the servers poll cost the same however large the state grows.
func (n *Node) Account(server, login string) (fsm.LocalAccount, bool) {
	return n.machine.Account(server, login)
}

// Transfer is transfer id as this node has applied it (see Account).
func (n *Node) Transfer(id uint64) (fsm.Transfer, bool) { return n.machine.Transfer(id) }

// Servers is a copy of the local servers alone (see Account).
func (n *Node) Servers() map[string]fsm.Server { return n.machine.Servers() }

// Subscribe delivers every mode change until the returned cancel is called.
func (n *Node) Subscribe() (<-chan ModeChange, func()) { return n.modes.subscribe() }

// Mode is the node's mode now. ACTIVE is reported only while the services
// run under a lease that has not expired on this node's clock.
func (n *Node) Mode() Mode {
	switch {
	case n.shuttingDown.Load():
		return Offline
	case n.active.Load() && n.LeaseValid():
		return Active
	}
	standby := Passive
	if !n.Licensed() {
		standby = Unlicensed
	}
	if n.raft.State() == raft.Leader {
		return standby
	}
	// A follower stands by while it hears from a leader; cut off from the
	// cluster it cannot take over, so it says OFFLINE.
	if last := n.raft.LastContact(); !last.IsZero() && time.Since(last) < n.cfg.Deadline {
		return standby
	}
	return Offline
}

// LeaseValid reports whether this node holds a lease that has not expired on
// its own monotonic clock. Listeners call it before every accept and write.
func (n *Node) LeaseValid() bool {
	now := bootClock()
	return leaseDo(n, func(m *leaseMachine) bool { return m.serving(now) })
}

// LeaseRemaining is the time left on this node's lease (0 when none), with
// the lease epoch, for metrics and status.
func (n *Node) LeaseRemaining() (uint64, time.Duration) {
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	return n.lease.remaining(bootClock())
}

// renewalTook is one committed lease renewal's epoch and latency.
type renewalTook struct {
	epoch uint64
	took  time.Duration
}

// LastRenewal is how long this node's last committed lease renewal took
// from proposal to commit, with its epoch (0, 0 before any), for status:
// the lease runs out if a renewal takes longer than Deadline - Heartbeat.
func (n *Node) LastRenewal() (uint64, time.Duration) {
	if r := n.lastRenewal.Load(); r != nil {
		return r.epoch, r.took
	}
	return 0, 0
}

// PasswordHash is an administrator's replicated bcrypt hash, nil for an
// unknown user.
func (n *Node) PasswordHash(user string) []byte {
	u, _ := n.machine.User(user)
	return u.Hash
}

// watchMode publishes changes of the computed mode (leader contact gained
// or lost, a lease running out between renewals).
func (n *Node) watchMode() {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		n.publishMode("")
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) publishMode(reason string) {
	m := n.Mode()
	if m == Active {
		n.lastActive.Store(time.Now().UnixNano())
	}
	if reason == "" {
		reason = n.modeReason(m)
	}
	if ch, ok := n.modes.publish(m, reason); ok {
		n.log.Info("mode changed", "from", ch.From, "to", ch.To, "reason", ch.Reason)
	}
}

// modeReason explains a mode found by watchMode rather than set by the lease
// loop. Leaving ACTIVE this way means the watch saw it before the fencing
// path did (a frozen node waking up, say): the reason is what ended the lease.
func (n *Node) modeReason(m Mode) string {
	switch {
	case m == Offline && n.shuttingDown.Load():
		return "shutting down"
	case m != Active && n.modes.current() == Active && n.raft.State() != raft.Leader:
		return "leadership lost"
	case m != Active && n.modes.current() == Active && !n.LeaseValid():
		return "lease expired"
	case m != Active && n.modes.current() == Active:
		return "lease lost"
	}
	return map[Mode]string{Active: "lease held", Passive: "standing by", Unlicensed: "no license slot", Offline: "no contact with a leader"}[m]
}

// Shutdown hands the lease over and leaves: services stop first, the lease
// is released through the log, leadership moves to another node, and only
// then do Raft and gossip stop.
func (n *Node) Shutdown(ctx context.Context) error {
	if !n.shuttingDown.CompareAndSwap(false, true) {
		return nil
	}
	n.publishMode("shutting down")
	leaseDo(n, (*leaseMachine).shutdown)
	n.fence("shutting down")
	if n.raft.State() == raft.Leader {
		if err := n.release(); err != nil {
			n.log.Warn("lease release failed; peers will wait for it to expire", "err", err)
		}
		if n.voters() > 1 {
			if err := n.raft.LeadershipTransfer().Error(); err != nil && !errors.Is(err, raft.ErrNotLeader) {
				n.log.Warn("leadership transfer failed", "err", err)
			}
		}
	}
	n.cancel()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("shutdown: %w", ctx.Err())
	}
	if err := n.gossip.Leave(time.Second); err != nil {
		n.log.Debug("gossip leave", "err", err)
	}
	n.gossip.Shutdown()
	// Raft's shutdown waits for its goroutines; bounded by ctx, so that a
	// stuck one cannot keep a stopping process alive (its lease was
	// released or runs out on its own).
	stopped := make(chan error, 1)
	go func() { stopped <- n.raft.Shutdown().Error() }()
	select {
	case err := <-stopped:
		n.store.Close()
		return err
	case <-ctx.Done():
		return fmt.Errorf("shutdown: raft did not stop: %w", ctx.Err())
	}
}

func (n *Node) voters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	return len(f.Configuration().Servers)
}

// release gives the lease back so that the next leader need not wait for
// it to expire, when the lease machine allows it: never while serving or
// fencing, and clean (cancelling the successor's wait) only after this
// process waited out the earlier holders and then fenced.
func (n *Node) release() error {
	epoch, clean, ok := n.releaseArgs()
	if !ok {
		return nil
	}
	err := n.apply(fsm.Command{Op: fsm.OpLeaseRelease, At: time.Now(),
		Lease: &fsm.LeaseArgs{Holder: n.cfg.NodeID, Session: n.session, Epoch: epoch, Clean: clean}})
	if err == nil {
		n.log.Info("lease released", "epoch", epoch, "clean", clean)
	}
	return err
}

func (n *Node) releaseArgs() (epoch uint64, clean, ok bool) {
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	return n.lease.release()
}

// ErrNotLeader is returned by Apply on a node that does not lead; the
// caller forwards the request to LeaderAPI instead.
var ErrNotLeader = errors.New("not the cluster leader")

// IsLeader reports whether this node leads the Raft group (and so is the
// one that commits changes), whether or not it is ACTIVE.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Apply commits a change through the log. Only the leader may propose.
func (n *Node) Apply(c fsm.Command) error {
	return n.Propose(c)()
}

// Propose hands c to Raft, as Apply does, without waiting for its commit:
// it returns once c is in Raft's queue, with the wait for what Apply would
// return. Commands proposed one after the other (a Propose returned before
// the next began) are applied in that order, so a caller may go on at once
// and wait only where it must: a later command's success says that c was
// applied before it (its own verdict still comes from its wait).
func (n *Node) Propose(c fsm.Command) (wait func() error) {
	if !n.IsLeader() {
		return func() error { return ErrNotLeader }
	}
	if c.At.IsZero() {
		c.At = time.Now()
	}
	w := n.propose(c)
	return func() error {
		err := w()
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return err
	}
}

// apply proposes a command and waits for it to be applied, returning the
// machine's verdict (Raft's own errors as they are).
func (n *Node) apply(c fsm.Command) error { return n.propose(c)() }

// propose hands c to Raft and returns the wait for its verdict.
func (n *Node) propose(c fsm.Command) (wait func() error) {
	b, err := n.encode(c)
	if err != nil {
		return func() error { return err }
	}
	f := n.raft.Apply(b, n.cfg.Deadline)
	return func() error {
		if err := f.Error(); err != nil {
			return err
		}
		if r, ok := f.Response().(fsm.Result); ok {
			return r.Err
		}
		return nil
	}
}

// LeaderAPI is the admin address (host:port) of the current leader, for
// forwarding writes; false when no leader is known.
func (n *Node) LeaderAPI() (string, bool) {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return "", false
	}
	var node fsm.Node
	var ok bool
	n.machine.Read(func(s *fsm.State) { node, ok = s.Nodes[string(id)] })
	if !ok || node.AdminAddr == "" {
		return "", false
	}
	return node.AdminAddr, true
}

// ResolveAdvertise picks the address peers should dial: the configured one,
// the host of a specific bind address, or the first non-loopback address.
func ResolveAdvertise(configured, bind string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if host, _, err := net.SplitHostPort(bind); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			return host, nil
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("list interface addresses: %w", err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String(), nil
		}
	}
	return "127.0.0.1", nil
}

// DefaultNodeID is the seed's ID form, `<host>:<admin port>-<GatewayName>-0`.
// On a loopback admin address several nodes share one hostname, so the
// address names the node instead.
func DefaultNodeID(hostname, adminHost string, adminPort int, gatewayName string) string {
	name := hostname
	if ip := net.ParseIP(adminHost); ip != nil && ip.IsLoopback() {
		name = adminHost
	}
	return name + ":" + strconv.Itoa(adminPort) + "-" + gatewayName + "-0"
}

// LoadNodeID returns the ID kept in dataDir, or proposed when there is none
// yet. An explicitly configured ID that differs from the kept one is an
// error: a node must not change identity under its Raft state.
func LoadNodeID(dataDir, configured, derived string) (id string, fresh bool, err error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "node-id"))
	switch {
	case err == nil:
		kept := string(b)
		if configured != "" && configured != kept {
			return "", false, fmt.Errorf("[global] NodeID %q differs from %q kept in %s", configured, kept, filepath.Join(dataDir, "node-id"))
		}
		return kept, false, nil
	case errors.Is(err, os.ErrNotExist):
		if configured != "" {
			return configured, true, nil
		}
		return derived, true, nil
	default:
		return "", false, fmt.Errorf("read node id: %w", err)
	}
}

// SaveNodeID keeps the node's ID in dataDir for every later start.
func SaveNodeID(dataDir, id string) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	return os.WriteFile(filepath.Join(dataDir, "node-id"), []byte(id), 0o600)
}
