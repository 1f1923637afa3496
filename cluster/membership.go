package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
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
}

// registration is the registry entry gossip says the node should have.
func (m meta) registration() fsm.Node {
	n := fsm.Node{ID: m.ID, Hostname: m.Hostname, IP: m.IP, AdminPort: m.AdminPort, AdminAddr: m.AdminAddr,
		RaftAddr: m.RaftAddr, GossipAddr: m.Gossip, LicenseRefused: m.NoLicense}
	if m.Started != 0 {
		n.Started = time.UnixMilli(m.Started).UTC()
	}
	return n
}

// sameRegistration says whether the registry entry r already holds what
// gossip says of the node (want).
func sameRegistration(r, want fsm.Node) bool {
	return r.Hostname == want.Hostname && r.IP == want.IP && r.AdminPort == want.AdminPort && r.AdminAddr == want.AdminAddr &&
		r.RaftAddr == want.RaftAddr && r.GossipAddr == want.GossipAddr && r.LicenseRefused == want.LicenseRefused && r.Started.Equal(want.Started)
}

type gossipDelegate Node

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	n := (*Node)(d)
	b, _ := json.Marshal(meta{ID: n.cfg.NodeID, RaftAddr: n.raftAddr, Hostname: n.cfg.Hostname,
		IP: n.cfg.AdvertiseHost, AdminPort: n.cfg.AdminPort, AdminAddr: n.adminAddr(), Gossip: n.gossipAddr, HasState: n.hasState.Load(), NoLicense: n.cfg.LicenseRefused,
		Started: n.started.UnixMilli()})
	if len(b) > limit {
		return nil
	}
	return b
}
func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

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
	mc.SecretKey = n.cfg.GossipKey
	mc.Logger = newStdLogger(n.log, "memberlist")
	// Status, not fencing, depends on these: probe about as often as
	// nodes refresh their status.
	mc.ProbeInterval = n.cfg.HeartbeatCheck
	mc.GossipInterval = 100 * time.Millisecond
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("listen gossip %s: %w", n.cfg.GossipBind, err)
	}
	n.gossip = ml
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
		if len(ms) == expect {
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
	for id, node := range n.machine.State().Nodes {
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
	registry := n.machine.State().Nodes
	for _, m := range n.members() {
		if addr, ok := voters[raft.ServerID(m.ID)]; !ok || string(addr) != m.RaftAddr {
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
