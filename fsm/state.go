package fsm

import "time"

// State is everything the cluster agrees on. It is copied out to readers, so
// its maps are never shared with the machine.
type State struct {
	Lease       Lease           `json:"lease"`
	Nodes       map[string]Node `json:"nodes"`
	NextNodeSeq uint64          `json:"nextNodeSeq"`
	Users       map[string]User `json:"users"`
	Initialized bool            `json:"initialized"`
	// HostKey is the cluster's SSH host key (PEM), so that clients see
	// the same key whichever node is ACTIVE.
	HostKey []byte `json:"hostKey,omitempty"`
}

// Lease is the committed right to be the ACTIVE node.
type Lease struct {
	Holder   string        `json:"holder"`
	Session  string        `json:"session"`
	Epoch    uint64        `json:"epoch"`
	Duration time.Duration `json:"duration"`
	Released bool          `json:"released"`
	// AcquiredAt and RenewedAt are the proposer's wall clock: shown to
	// operators, never used to decide who may serve.
	AcquiredAt time.Time `json:"acquiredAt"`
	RenewedAt  time.Time `json:"renewedAt"`
}

// Held reports whether someone holds the lease (it may still have expired on
// the holder's own clock; only the holder and the wait rule know that).
func (l Lease) Held() bool { return l.Holder != "" && !l.Released }

// Node is one member of the gateway cluster as the registry knows it.
type Node struct {
	ID         string `json:"id"`
	Hostname   string `json:"hostname"`
	IP         string `json:"ip"`
	AdminPort  int    `json:"adminPort"`
	RaftAddr   string `json:"raftAddr"`
	GossipAddr string `json:"gossipAddr"`
	// Seq is the order of first registration; license slots follow it.
	Seq        uint64    `json:"seq"`
	Registered time.Time `json:"registered"`
	Status     string    `json:"status"`
	LastUpdate time.Time `json:"lastUpdate"`
	LastActive time.Time `json:"lastActive,omitempty"`
}

// User is an administrator of the gateway. Hash is a bcrypt hash computed by
// the proposer (bcrypt salts randomly, so it cannot be computed in Apply).
type User struct {
	Name  string            `json:"name"`
	Hash  []byte            `json:"hash"`
	Perms map[string]string `json:"perms,omitempty"`
}

func (s State) clone() State {
	c := s
	c.Nodes = make(map[string]Node, len(s.Nodes))
	for k, v := range s.Nodes {
		c.Nodes[k] = v
	}
	c.Users = make(map[string]User, len(s.Users))
	for k, v := range s.Users {
		v.Perms = cloneMap(v.Perms)
		c.Users[k] = v
	}
	c.HostKey = append([]byte(nil), s.HostKey...)
	return c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
