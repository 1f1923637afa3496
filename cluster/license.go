package cluster

import (
	"cmp"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/licensing"
)

// errNotEligible ends a lease attempt on a leader the license does not let
// be ACTIVE; leadership goes to a node it does.
var errNotEligible = errors.New("license does not allow this node to be ACTIVE")

// license is the license in force: the replicated one, or the one-node
// evaluation when none was installed (or the installed one is unreadable
// with this build's vendor key).
func (n *Node) license(doc []byte, now time.Time) licensing.License {
	if len(doc) == 0 {
		return licensing.Evaluation()
	}
	l, err := licensing.Parse(doc, licensing.VendorKey, now)
	switch {
	case err == nil, errors.Is(err, licensing.ErrExpired), errors.Is(err, licensing.ErrNotYetValid):
		return l // an expired license licenses no node
	default:
		return licensing.Evaluation()
	}
}

// Licensed reports whether the registry gives this node a license slot.
func (n *Node) Licensed() bool {
	var licensed bool
	n.machine.Read(func(s *fsm.State) { licensed = s.Nodes[n.cfg.NodeID].Licensed })
	return licensed
}

// AliveMembers are the node IDs gossip reports alive, this node included.
func (n *Node) AliveMembers() map[string]bool { return n.aliveIDs() }

// aliveIDs are the members gossip reports alive, this node included.
func (n *Node) aliveIDs() map[string]bool {
	alive := map[string]bool{}
	for _, m := range n.members() {
		alive[m.ID] = true
	}
	return alive
}

// reachable tells whether a peer's Raft port answers now, with a probe
// handshake (mutual TLS, so that the port does not log a stranger). Gossip
// takes seconds to declare a killed node dead; a refused or silent port
// says so at once, so that the license rule and hand-overs never wait on a
// dead node (a leader handing leadership to one only times out, again and
// again).
func (n *Node) reachable(addr string) bool {
	c, err := n.stream.dial(addr, alpnProbe, probeTimeout)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// probeTimeout bounds the liveness probe of a peer's Raft port.
const probeTimeout = 500 * time.Millisecond

// eligible applies the seed's rule: a licensed node may be ACTIVE; an
// unlicensed one only on a one-node license with no licensed node alive
// (in gossip and answering on its Raft port).
func (n *Node) eligible() bool {
	if n.cfg.LicenseRefused {
		return false // its operator installed a license that is not valid
	}
	now := time.Now()
	slots := slotsOf(n.machine.Nodes())
	if slots[n.cfg.NodeID] {
		return true
	}
	alive := map[string]bool{}
	for _, m := range n.members() {
		alive[m.ID] = m.ID == n.cfg.NodeID || !slots[m.ID] || n.reachable(m.RaftAddr)
	}
	return licensing.MayBeActive(n.license(n.machine.License(), now), now, n.cfg.NodeID, slots, alive)
}

func slotsOf(nodes map[string]fsm.Node) map[string]bool {
	slots := map[string]bool{}
	for id, node := range nodes {
		if node.Licensed {
			slots[id] = true
		}
	}
	return slots
}

// handOver moves leadership to a licensed voter that is alive and answers,
// if there is one: the one registered first.
func (n *Node) handOver() {
	alive := n.aliveIDs()
	var candidates []fsm.Node
	for _, node := range n.machine.Nodes() {
		if alive[node.ID] && node.ID != n.cfg.NodeID && node.Licensed {
			candidates = append(candidates, node)
		}
	}
	slices.SortFunc(candidates, func(a, b fsm.Node) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, best := range candidates {
		if !n.reachable(best.RaftAddr) {
			continue
		}
		n.log.Info("handing leadership to a licensed node", "to", best.ID)
		if err := n.raft.LeadershipTransferToServer(raft.ServerID(best.ID), raft.ServerAddress(best.RaftAddr)).Error(); err != nil {
			n.log.Warn("leadership transfer", "to", best.ID, "err", err)
		}
		return
	}
}

// reconcileLicense installs this node's license file when the cluster has
// none or an older one, and reassigns slots when the rules say so.
func (n *Node) reconcileLicense(now time.Time) {
	doc, nodes := n.machine.License(), n.machine.Nodes()
	if n.cfg.License != nil && !slices.Equal(doc, n.cfg.License) {
		mine, _ := licensing.Parse(n.cfg.License, licensing.VendorKey, now)
		current := n.license(doc, now)
		if len(doc) == 0 || mine.Issued.After(current.Issued) {
			if err := n.apply(fsm.Command{Op: fsm.OpLicenseSet, At: now, License: n.cfg.License}); err != nil {
				n.log.Warn("install license", "err", err)
				return
			}
			n.log.Info("license installed in the cluster", "licensee", mine.Licensee, "nodes", mine.Nodes, "expires", mine.Expires)
			doc, nodes = n.machine.License(), n.machine.Nodes()
		}
	}
	var members []licensing.Member
	for _, node := range nodes {
		if node.LicenseRefused {
			continue
		}
		members = append(members, licensing.Member{ID: node.ID, Seq: node.Seq, Offline: node.Status == string(Offline),
			OfflineSince: node.OfflineSince, Licensed: node.Licensed})
	}
	slots := licensing.Slots(n.license(doc, now), members, now, n.cfg.Deadline)
	if maps.Equal(slots, slotsOf(nodes)) {
		return
	}
	ids := slices.Sorted(maps.Keys(slots))
	if err := n.apply(fsm.Command{Op: fsm.OpSlots, At: now, Licensed: ids}); err != nil {
		n.log.Warn("assign license slots", "err", err)
		return
	}
	n.log.Info("license slots assigned", "licensed", ids)
}
