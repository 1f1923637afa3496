package cluster

import (
	"errors"
	"fmt"
	"sort"

	"github.com/hashicorp/raft"

	"github.com/udmg/gateway/fsm"
)

// ErrMixedVersions refuses a change that needs a newer command version than
// one of the voters applies: the cluster is in a rolling upgrade (or one
// node was left behind), and writing the entry would stop that node.
var ErrMixedVersions = errors.New("the cluster's nodes run different releases")

// writeVersion is the command version the leader writes: the lowest that
// every voter applies (fsm.KnownVersion of its registry entry, which the
// leader keeps from gossip), this binary's own at most. The slowest voter
// named is the one holding it back.
func (n *Node) writeVersion() (v int, slowest string) {
	v = fsm.Current()
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return v, ""
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
		}
	}
	sort.Strings(ids)
	n.machine.Read(func(s *fsm.State) {
		for _, id := range ids {
			known := 2 // a voter not registered yet is taken to be of the oldest release that could join
			if node, ok := s.Nodes[id]; ok {
				known = fsm.KnownVersion(node)
			}
			if known < v {
				v, slowest = known, id
			}
		}
	})
	return v, slowest
}

// encode serialises c at the cluster's write version, or refuses it with
// ErrMixedVersions when c needs more (fsm.Needs).
func (n *Node) encode(c fsm.Command) ([]byte, error) {
	if c.V == 0 {
		v, slowest := n.writeVersion()
		if need := fsm.Needs(c); need > v {
			return nil, fmt.Errorf("%w: %s needs command version %d, and node %s applies only %d: upgrade it first",
				ErrMixedVersions, c.Op, need, slowest, v)
		}
		c.V = v
	}
	return fsm.Encode(c)
}
