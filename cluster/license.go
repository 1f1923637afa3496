package cluster

import (
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
func (n *Node) license(st fsm.State, now time.Time) licensing.License {
	if len(st.License) == 0 {
		return licensing.Evaluation()
	}
	l, err := licensing.Parse(st.License, licensing.VendorKey, now)
	switch {
	case err == nil, errors.Is(err, licensing.ErrExpired), errors.Is(err, licensing.ErrNotYetValid):
		return l // an expired license licenses no node
	default:
		return licensing.Evaluation()
	}
}

// Licensed reports whether the registry gives this node a license slot.
func (n *Node) Licensed() bool {
	return n.machine.State().Nodes[n.cfg.NodeID].Licensed
}

// aliveIDs are the members gossip reports alive, this node included.
func (n *Node) aliveIDs() map[string]bool {
	alive := map[string]bool{}
	for _, m := range n.members() {
		alive[m.ID] = true
	}
	return alive
}

// eligible applies the seed's rule: a licensed node may be ACTIVE; an
// unlicensed one only on a one-node license with no licensed node alive.
func (n *Node) eligible() bool {
	if n.cfg.LicenseRefused {
		return false // its operator installed a license that is not valid
	}
	st := n.machine.State()
	now := time.Now()
	return licensing.MayBeActive(n.license(st, now), now, n.cfg.NodeID, slotsOf(st), n.aliveIDs())
}

func slotsOf(st fsm.State) map[string]bool {
	slots := map[string]bool{}
	for id, node := range st.Nodes {
		if node.Licensed {
			slots[id] = true
		}
	}
	return slots
}

// handOver moves leadership to a licensed, alive voter, if there is one.
func (n *Node) handOver() {
	st := n.machine.State()
	alive := n.aliveIDs()
	var best *fsm.Node
	for _, node := range st.Nodes {
		if node.ID != n.cfg.NodeID && node.Licensed && alive[node.ID] && (best == nil || node.Seq < best.Seq) {
			best = &node
		}
	}
	if best == nil {
		return
	}
	n.log.Info("handing leadership to a licensed node", "to", best.ID)
	if err := n.raft.LeadershipTransferToServer(raft.ServerID(best.ID), raft.ServerAddress(best.RaftAddr)).Error(); err != nil {
		n.log.Warn("leadership transfer", "to", best.ID, "err", err)
	}
}

// reconcileLicense installs this node's license file when the cluster has
// none or an older one, and reassigns slots when the rules say so.
func (n *Node) reconcileLicense(now time.Time) {
	st := n.machine.State()
	if n.cfg.License != nil && !slices.Equal(st.License, n.cfg.License) {
		mine, _ := licensing.Parse(n.cfg.License, licensing.VendorKey, now)
		current := n.license(st, now)
		if len(st.License) == 0 || mine.Issued.After(current.Issued) {
			if err := n.apply(fsm.Command{Op: fsm.OpLicenseSet, At: now, License: n.cfg.License}); err != nil {
				n.log.Warn("install license", "err", err)
				return
			}
			n.log.Info("license installed in the cluster", "licensee", mine.Licensee, "nodes", mine.Nodes, "expires", mine.Expires)
			st = n.machine.State()
		}
	}
	var members []licensing.Member
	for _, node := range st.Nodes {
		if node.LicenseRefused {
			continue
		}
		members = append(members, licensing.Member{ID: node.ID, Seq: node.Seq, Offline: node.Status == string(Offline),
			OfflineSince: node.OfflineSince, Licensed: node.Licensed})
	}
	slots := licensing.Slots(n.license(st, now), members, now, n.cfg.Deadline)
	if maps.Equal(slots, slotsOf(st)) {
		return
	}
	ids := slices.Sorted(maps.Keys(slots))
	if err := n.apply(fsm.Command{Op: fsm.OpSlots, At: now, Licensed: ids}); err != nil {
		n.log.Warn("assign license slots", "err", err)
		return
	}
	n.log.Info("license slots assigned", "licensed", ids)
}
