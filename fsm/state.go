package fsm

import "time"

// State is everything the cluster agrees on. It is copied out to readers, so
// its maps are never shared with the machine.
type State struct {
	Lease       Lease           `json:"lease"`
	Nodes       map[string]Node `json:"nodes"`
	NextNodeSeq uint64          `json:"nextNodeSeq"`
	Users       map[string]User `json:"users"`
	// Tokens are API bearer tokens by the SHA-256 of their secret.
	Tokens      map[string]Token `json:"tokens"`
	Initialized bool             `json:"initialized"`
	// License is the signed license document in force (nil: evaluation).
	License []byte `json:"license,omitempty"`
	// HostKey is the cluster's SSH host key (PEM, sealed with the AES
	// passphrase by the server), so that clients see the same key
	// whichever node is ACTIVE.
	HostKey []byte `json:"hostKey,omitempty"`
	// Secrets is the data key that seals the state's secrets, itself
	// sealed with the key-encryption key (fsm/secrets.go); nil before
	// bootstrap and in clusters from before it moved into the state.
	Secrets *SecretsKeys `json:"secrets,omitempty"`

	// The MFT objects (mft.go), keyed by name, AccountKey or RuleKey.
	Servers        map[string]Server        `json:"servers"`
	Accounts       map[string]LocalAccount  `json:"accounts"`
	Partners       map[string]Partner       `json:"partners"`
	RemoteAccounts map[string]RemoteAccount `json:"remoteAccounts"`
	Rules          map[string]Rule          `json:"rules"`
	// Keys are the OpenPGP keys of the tasks, by name (version 3).
	Keys map[string]PGPKey `json:"keys,omitempty"`
	// SecretValues are the tasks' named secrets, by name (version 3).
	SecretValues map[string]Secret `json:"secretValues,omitempty"`
	// Transfers are the live ones and a recent window of finished ones.
	Transfers      map[uint64]Transfer `json:"transfers"`
	NextTransferID uint64              `json:"nextTransferId"`
	// Schedules start transfers on the ACTIVE node (schedules.go).
	Schedules map[string]Schedule `json:"schedules,omitempty"`
	// Seeded is set once the default servers were created (OpSeed), so
	// that an operator who deletes them does not see them come back.
	Seeded bool `json:"seeded,omitempty"`

	// ix orders Transfers for the prune and the engine (index.go): the
	// machine's own state keeps it, copies build one when asked.
	ix *transferIndex
}

// Lease is the committed right to be the ACTIVE node.
type Lease struct {
	Holder   string        `json:"holder"`
	Session  string        `json:"session"`
	Epoch    uint64        `json:"epoch"`
	Duration time.Duration `json:"duration"`
	Released bool          `json:"released"`
	// Clean is set by a release whose holder had waited out every earlier
	// holder and then fenced: only such a release lets the next holder
	// start at once (ARCHITECTURE.md, lease point 4).
	Clean bool `json:"clean,omitempty"`
	// Grace is what the holder declared with its acquire (LeaseArgs.Grace).
	Grace *time.Duration `json:"grace,omitempty"`
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
	ID        string `json:"id"`
	Hostname  string `json:"hostname"`
	IP        string `json:"ip"`
	AdminPort int    `json:"adminPort"`
	// AdminAddr is where peers reach the node's API (forwarded writes).
	AdminAddr  string `json:"adminAddr"`
	RaftAddr   string `json:"raftAddr"`
	GossipAddr string `json:"gossipAddr"`
	// Seq is the order of first registration; license slots follow it.
	Seq        uint64    `json:"seq"`
	Registered time.Time `json:"registered"`
	// Started is when the node's process started (its uptime), as it
	// gossiped it; zero when unknown.
	Started    time.Time `json:"started,omitzero"`
	Status     string    `json:"status"`
	LastUpdate time.Time `json:"lastUpdate"`
	LastActive time.Time `json:"lastActive,omitempty"`
	// OfflineSince is when the node was last marked OFFLINE (zero while
	// it is up); a node gone longer than Deadline gives its slot back.
	OfflineSince time.Time `json:"offlineSince,omitempty"`
	Licensed     bool      `json:"licensed"`
	// FSMVersion is the newest command version the node's binary applies,
	// as it gossiped it (0: not known, which counts as 2, the last release
	// before nodes told it). The leader writes at the lowest of its voters'
	// (cluster: writeVersion). An older binary drops the field: harmless,
	// since it only ever makes the leader more careful.
	FSMVersion int `json:"fsmVersion,omitempty"`
	// LicenseRefused marks a node whose own license file is invalid: it
	// never takes a slot.
	LicenseRefused bool `json:"licenseRefused,omitempty"`
}

// Token is an API bearer token; only the hash of its secret is kept.
type Token struct {
	Hash    string    `json:"hash"`
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
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
	c.Tokens = make(map[string]Token, len(s.Tokens))
	for k, v := range s.Tokens {
		c.Tokens[k] = v
	}
	c.HostKey = append([]byte(nil), s.HostKey...)
	c.License = append([]byte(nil), s.License...)
	s.cloneMFT(&c)
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
