package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/udmg/gateway/fsm"
)

// meta is what each node gossips about itself. Gossip is for discovery and
// status only; it never decides who may serve.
type meta struct {
	ID        string `json:"id"`
	RaftAddr  string `json:"raft"`
	Hostname  string `json:"host"`
	IP        string `json:"ip"`
	AdminPort int    `json:"admin"`
	AdminAddr string `json:"adminAddr"`
	Gossip    string `json:"gossip"`
	HasState  bool   `json:"state"`
	NoLicense bool   `json:"nolicense,omitempty"`
	Started   int64  `json:"started,omitempty"` // process start, Unix milliseconds
	FSM       int    `json:"fsm,omitempty"`     // newest command version it applies
}

// registration is the registry entry gossip says the node should have.
func (m meta) registration() fsm.Node {
	n := fsm.Node{ID: m.ID, Hostname: m.Hostname, IP: m.IP, AdminPort: m.AdminPort, AdminAddr: m.AdminAddr,
		RaftAddr: m.RaftAddr, GossipAddr: m.Gossip, LicenseRefused: m.NoLicense, FSMVersion: m.FSM}
	if m.Started != 0 {
		n.Started = time.UnixMilli(m.Started).UTC()
	}
	return n
}

// sameRegistration says whether the registry entry r already holds what
// gossip says of the node (want).
func sameRegistration(r, want fsm.Node) bool {
	return r.Hostname == want.Hostname && r.IP == want.IP && r.AdminPort == want.AdminPort && r.AdminAddr == want.AdminAddr &&
		r.RaftAddr == want.RaftAddr && r.GossipAddr == want.GossipAddr && r.LicenseRefused == want.LicenseRefused && r.Started.Equal(want.Started) &&
		r.FSMVersion == want.FSMVersion
}

type gossipDelegate Node

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	n := (*Node)(d)
	b, _ := json.Marshal(meta{ID: n.cfg.NodeID, RaftAddr: n.raftAddr, Hostname: n.cfg.Hostname,
		IP: n.cfg.AdvertiseHost, AdminPort: n.cfg.AdminPort, AdminAddr: n.adminAddr(), Gossip: n.gossipAddr, HasState: n.hasState.Load(), NoLicense: n.cfg.LicenseRefused,
		Started: n.started.UnixMilli(), FSM: fsm.Current()})
	if len(b) > limit {
		return nil
	}
	return b
}
func (d *gossipDelegate) NotifyMsg(b []byte) {
	if len(b) > 0 && b[0] == msgLoginFailure {
		(*Node)(d).loginReceived(b[1:])
	}
}

func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte {
	if q := (*Node)(d).logins.Load(); q != nil {
		return q.GetBroadcasts(overhead, limit)
	}
	return nil
}
func (d *gossipDelegate) LocalState(join bool) []byte            { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool) {}

func (n *Node) startGossip() error {
	host, portStr, err := net.SplitHostPort(n.cfg.GossipBind)
	if err != nil {
		return fmt.Errorf("gossip address %q: %w", n.cfg.GossipBind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("gossip address %q: bad port", n.cfg.GossipBind)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = n.cfg.NodeID
	if host == "" {
		host = "0.0.0.0"
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = n.cfg.AdvertiseHost, port
	n.gossipAddr = net.JoinHostPort(n.cfg.AdvertiseHost, portStr)
	mc.Delegate = (*gossipDelegate)(n)
	keys := n.cfg.Identity.GossipKeys
	ring, err := memberlist.NewKeyring(keys, keys[0])
	if err != nil {
		return fmt.Errorf("gossip keys: %w", err)
	}
	mc.Keyring = ring
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.Logger = log.New(gossipLog{logWriter{n.log, "memberlist"}, n.stream.refusals}, "", 0)
	// Status, not fencing, depends on these: probe about as often as
	// nodes refresh their status.
	mc.ProbeInterval = n.cfg.HeartbeatCheck
	mc.GossipInterval = 100 * time.Millisecond
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("listen gossip %s: %w", n.cfg.GossipBind, err)
	}
	n.gossip = ml
	n.logins.Store(&memberlist.TransmitLimitedQueue{RetransmitMult: mc.RetransmitMult, NumNodes: ml.NumMembers})
	return nil
}

// members returns the alive members that gossip a valid meta, this node included.
func (n *Node) members() []meta {
	var out []meta
	for _, m := range n.gossip.Members() {
		if m.State != memberlist.StateAlive {
			continue
		}
		var md meta
		if json.Unmarshal(m.Meta, &md) == nil && md.ID != "" && md.RaftAddr != "" {
			out = append(out, md)
		}
	}
	return out
}

// joinLoop keeps trying the configured peers: at start until one answers,
// then now and again for peers gossip has lost (after a partition heals
// memberlist does not look for them by itself).
func (n *Node) joinLoop() {
	if len(n.cfg.Join) == 0 {
		return
	}
	retry := 200 * time.Millisecond
	joined := false
	lastRefusal := ""
	for {
		alive := map[string]bool{}
		for _, m := range n.gossip.Members() {
			if m.State == memberlist.StateAlive {
				alive[m.Address()] = true
			}
		}
		var missing []string
		for _, j := range n.cfg.Join {
			if !alive[j] && j != n.gossip.LocalNode().Address() {
				missing = append(missing, j)
			}
		}
		if len(missing) > 0 {
			if c, err := n.gossip.Join(missing); err == nil && c > 0 {
				if !joined {
					n.log.Info("joined gossip", "contacted", c)
				}
				joined = true
			} else if err != nil && isKeyError(err) {
				if reason := err.Error(); reason != lastRefusal {
					n.log.Warn("refused by gossip peers: gossip keys differ (wrong [cluster] JoinToken or GossipKey?)", "peers", missing, "reason", reason)
					lastRefusal = reason
				}
				retry = 5 * time.Second
			} else if !joined {
				n.log.Debug("join failed, retrying", "peers", missing, "err", err)
			}
		}
		if joined {
			retry = 5 * time.Second
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// bootstrapLoop forms a brand-new cluster the Consul way: once
// BootstrapExpect fresh nodes see each other, each bootstraps with the same
// sorted configuration. A node configured to join others with
// BootstrapExpect 1 never bootstraps: an existing leader adds it.
func (n *Node) bootstrapLoop() {
	expect := n.cfg.BootstrapExpect
	if expect <= 1 && len(n.cfg.Join) > 0 {
		n.log.Info("waiting to be added to an existing cluster")
		return
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		ms := n.members()
		if slices.ContainsFunc(ms, func(m meta) bool { return m.HasState && m.ID != n.cfg.NodeID }) {
			n.log.Info("a peer already has cluster state; waiting to be added")
			return
		}
		if len(ms) == expect && !slices.ContainsFunc(ms, func(m meta) bool { return !n.proven(m) }) {
			var cfg raft.Configuration
			for _, m := range ms {
				cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.RaftAddr)})
			}
			slices.SortFunc(cfg.Servers, func(a, b raft.Server) int { return cmpString(string(a.ID), string(b.ID)) })
			if err := n.raft.BootstrapCluster(cfg).Error(); err != nil {
				n.log.Warn("bootstrap", "err", err)
			} else {
				n.log.Info("bootstrapped new cluster", "servers", len(cfg.Servers))
			}
			n.hasState.Store(true)
			n.gossip.UpdateNode(time.Second)
			return
		}
		if len(ms) > expect {
			n.log.Error("more fresh nodes than [cluster] BootstrapExpect; not bootstrapping", "seen", len(ms), "expect", expect)
			return
		}
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// reconcileLoop runs on the leader: every gossip member becomes a Raft voter
// and is registered in the node table. Dead members stay voters; only an
// operator removes a node.
func (n *Node) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.HeartbeatCheck)
	defer t.Stop()
	for {
		n.reconcile()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reconcile brings the replicated view in line with what the leader sees:
// voters, the node registry and its statuses, the license and its slots.
func (n *Node) reconcile() {
	n.reconcileMu.Lock()
	defer n.reconcileMu.Unlock()
	n.reconcileMembers()
	now := time.Now()
	n.reconcileStatus(now)
	n.reconcileLicense(now)
}

// reconcileStatus records each node's mode as the leader sees it: its own,
// OFFLINE for nodes gossip reports dead, standing by for the others.
func (n *Node) reconcileStatus(now time.Time) {
	alive := n.aliveIDs()
	var offline []string
	for id, node := range n.machine.Nodes() {
		want := Passive
		switch {
		case id == n.cfg.NodeID:
			want = n.Mode()
		case !alive[id]:
			want = Offline
		case !node.Licensed:
			want = Unlicensed
		}
		if node.Status == string(want) {
			continue
		}
		if err := n.apply(fsm.Command{Op: fsm.OpNodeStatus, At: now, Status: &fsm.StatusArgs{ID: id, Status: string(want)}}); err != nil {
			n.log.Warn("record node status", "id", id, "err", err)
			continue
		}
		if want == Offline {
			offline = append(offline, id)
		}
	}
	n.reportOffline(offline, now)
}

func (n *Node) reportOffline(ids []string, at time.Time) {
	if len(ids) > 0 && n.cfg.OnOffline != nil {
		n.cfg.OnOffline(ids, at)
	}
}

func (n *Node) reconcileMembers() {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	voters := map[raft.ServerID]raft.ServerAddress{}
	for _, s := range f.Configuration().Servers {
		voters[s.ID] = s.Address
	}
	registry := n.machine.Nodes()
	for _, m := range n.members() {
		if addr, ok := voters[raft.ServerID(m.ID)]; !ok || string(addr) != m.RaftAddr {
			if !n.proven(m) {
				continue
			}
			if err := n.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, n.cfg.Deadline).Error(); err != nil {
				n.log.Warn("add voter", "id", m.ID, "err", err)
				continue
			}
			n.log.Info("added voter", "id", m.ID, "addr", m.RaftAddr)
		}
		want := m.registration()
		if r, ok := registry[m.ID]; ok && sameRegistration(r, want) {
			continue
		}
		if err := n.apply(fsm.Command{Op: fsm.OpNodeRegister, At: time.Now(), Node: &want}); err != nil {
			n.log.Warn("register node", "id", m.ID, "err", err)
		}
	}
}

// adminAddr is where peers reach this node's API: the admin host when it is
// a specific address, else the advertised one.
func (n *Node) adminAddr() string {
	host := n.cfg.AdminHost
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = n.cfg.AdvertiseHost
	}
	return net.JoinHostPort(host, strconv.Itoa(n.cfg.AdminPort))
}

// proofRetry is how soon a member that failed to prove its identity is
// tried again.
const proofRetry = 5 * time.Second

// proofs remembers which members proved their identity at which Raft
// address, and which were refused (logged once per member and reason).
type proofs struct {
	mu      sync.Mutex
	proven  map[string]string // node ID -> Raft address it proved itself at
	refused map[string]refusal
}

type refusal struct {
	reason string
	at     time.Time
}

// proven says whether member m has shown, in a TLS handshake to its
// advertised Raft address, a certificate from the cluster CA that names its
// node ID. Only then may it become a voter.
func (n *Node) proven(m meta) bool {
	if m.ID == n.cfg.NodeID {
		return true
	}
	p := &n.proofs
	p.mu.Lock()
	if p.proven == nil {
		p.proven, p.refused = map[string]string{}, map[string]refusal{}
	}
	if p.proven[m.ID] == m.RaftAddr {
		p.mu.Unlock()
		return true
	}
	if r, ok := p.refused[m.ID]; ok && time.Since(r.at) < proofRetry {
		p.mu.Unlock()
		return false
	}
	p.mu.Unlock()

	err := n.stream.probe(m.RaftAddr, m.ID)

	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.proven[m.ID] = m.RaftAddr
		delete(p.refused, m.ID)
		return true
	}
	prev, seen := p.refused[m.ID]
	p.refused[m.ID] = refusal{reason: err.Error(), at: time.Now()}
	if !seen || prev.reason != err.Error() {
		n.log.Warn("gossip member not added as a voter: it did not prove its identity", "id", m.ID, "raft", m.RaftAddr, "reason", err.Error())
	}
	return false
}

// ErrUnknownNode is returned by RemoveNode for an ID that is neither a
// Raft server nor in the node table.
var ErrUnknownNode = errors.New("no such node")

// RemoveNode takes a node out of the Raft configuration and the node table,
// on the operator's request (udmgctl nodes remove). Only the leader can; a
// node still alive in gossip is added again once it proves its identity,
// so it should be stopped first.
func (n *Node) RemoveNode(id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if id == n.cfg.NodeID {
		return fmt.Errorf("node %s leads the cluster: stop it and remove it from another node", id)
	}
	n.reconcileMu.Lock()
	defer n.reconcileMu.Unlock()
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	inRaft := slices.ContainsFunc(f.Configuration().Servers, func(s raft.Server) bool { return string(s.ID) == id })
	_, inTable := n.machine.Nodes()[id]
	if !inRaft && !inTable {
		return fmt.Errorf("%w: %s", ErrUnknownNode, id)
	}
	if inRaft {
		if err := n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.Deadline).Error(); err != nil {
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
				return fmt.Errorf("%w: %v", ErrNotLeader, err)
			}
			return fmt.Errorf("remove %s from raft: %w", id, err)
		}
		n.log.Info("removed voter", "id", id)
	}
	n.proofs.mu.Lock()
	delete(n.proofs.proven, id)
	n.proofs.mu.Unlock()
	if inTable {
		if err := n.apply(fsm.Command{Op: fsm.OpNodeRemove, At: time.Now(), Name: id}); err != nil {
			return fmt.Errorf("remove %s from the node table: %w", id, err)
		}
	}
	return nil
}

// isKeyError says whether a gossip error comes from encryption: the peer
// uses other keys, or none.
func isKeyError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "decrypt") || strings.Contains(s, "encryption") || strings.Contains(s, "keyring")
}

// gossipLog passes memberlist's log on, except that packets it cannot
// decrypt (a stranger, or a node with another token) are logged as
// refusals: with the sender, at most once per refusalInterval per host.
type gossipLog struct {
	inner    logWriter
	refusals *refusals
}

func (g gossipLog) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if !isKeyError(errors.New(line)) {
			g.inner.Write([]byte(line))
			continue
		}
		from := "unknown"
		if i := strings.Index(line, " from="); i >= 0 {
			from = strings.Fields(line[i+len(" from="):] + " ")[0]
			line = line[:i]
		}
		if i := strings.Index(line, "memberlist: "); i >= 0 {
			line = line[i+len("memberlist: "):]
		}
		g.refusals.note("gossip", from, fmt.Errorf("gossip keys differ (wrong [cluster] JoinToken or GossipKey?): %s", line))
	}
	return len(p), nil
}
