package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Result is what applying one entry produced; the proposer receives it as the
// raft ApplyFuture's response.
type Result struct {
	Op  Op
	Err error
	// Lease is the lease after the command, set for lease commands so the
	// node that applied it can time its own fencing.
	Lease Lease
}

// Machine holds the state and applies commands to it. It is safe for
// concurrent readers; Apply, Snapshot and Restore are called by raft.
type Machine struct {
	mu sync.RWMutex
	s  State
	// halted is the ErrUnsupported that stopped the machine: every entry
	// after it is refused with it too, so the state never moves past an
	// entry it could not apply.
	halted error
	// written is the highest command version in the state: snapshots say
	// it, not this binary's version, so that an older voter of a cluster
	// in a rolling upgrade can still install them.
	written int
}

// New returns an empty machine, as on a node that has never joined a cluster.
func New() *Machine {
	m := &Machine{s: State{Nodes: map[string]Node{}, Users: map[string]User{}, Tokens: map[string]Token{}}}
	m.s.initMFT()
	m.s.ix = newTransferIndex(m.s.Transfers)
	return m
}

// State returns a copy of the current state.
func (m *Machine) State() State {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.s.clone()
}

// Read runs f on the current state under the read lock, without copying
// it: lookups on hot paths (/ping, logins, the lease loop) then cost the
// same however large the state grows. f must return quickly and must not
// keep or change anything it reaches.
func (m *Machine) Read(f func(s *State)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	f(&m.s)
}

// Lease returns the current lease.
func (m *Machine) Lease() Lease {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.s.Lease
}

// Apply decodes and applies one log entry. A refused command leaves the state
// untouched and reports why in Result.Err. An entry this binary cannot
// apply (errors.Is(Result.Err, ErrUnsupported)) halts the machine: it and
// every later entry are refused with that error, and the caller must stop.
func (m *Machine) Apply(data []byte) Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.halted != nil {
		return Result{Err: m.halted}
	}
	c, err := Decode(data)
	if err != nil {
		if errors.Is(err, ErrUnsupported) {
			m.halted = err
		}
		return Result{Err: err}
	}
	res := Result{Op: c.Op}
	m.written = max(m.written, c.version())
	if c.Epoch != 0 && (c.Epoch != m.s.Lease.Epoch || m.s.Lease.Released) {
		res.Err = fmt.Errorf("%s under epoch %d (current %d): %w", c.Op, c.Epoch, m.s.Lease.Epoch, ErrStaleEpoch)
		res.Lease = m.s.Lease
		return res
	}
	res.Err = m.apply(c)
	res.Lease = m.s.Lease
	return res
}

func (m *Machine) apply(c Command) error {
	s := &m.s
	switch c.Op {
	case OpLeaseAcquire:
		a := c.Lease
		if a.Epoch != s.Lease.Epoch+1 {
			return fmt.Errorf("acquire epoch %d, want %d: %w", a.Epoch, s.Lease.Epoch+1, ErrStaleEpoch)
		}
		s.Lease = Lease{Holder: a.Holder, Session: a.Session, Epoch: a.Epoch, Duration: a.Duration, Grace: a.Grace, AcquiredAt: c.At, RenewedAt: c.At}
	case OpLeaseRenew, OpLeaseRelease:
		a := c.Lease
		switch {
		case a.Epoch != s.Lease.Epoch:
			return fmt.Errorf("%s epoch %d, current %d: %w", c.Op, a.Epoch, s.Lease.Epoch, ErrStaleEpoch)
		case a.Holder != s.Lease.Holder || a.Session != s.Lease.Session:
			return fmt.Errorf("%s by %s: %w", c.Op, a.Holder, ErrNotHolder)
		case s.Lease.Released:
			return fmt.Errorf("%s epoch %d: %w", c.Op, a.Epoch, ErrReleased)
		}
		if c.Op == OpLeaseRelease {
			s.Lease.Released, s.Lease.Clean = true, a.Clean
		} else {
			s.Lease.RenewedAt = c.At
		}
	case OpNodeRegister:
		n := *c.Node
		if old, ok := s.Nodes[n.ID]; ok {
			n.Seq, n.Registered, n.Status, n.LastUpdate, n.LastActive = old.Seq, old.Registered, old.Status, old.LastUpdate, old.LastActive
			n.OfflineSince, n.Licensed = old.OfflineSince, old.Licensed && !n.LicenseRefused
		} else {
			s.NextNodeSeq++
			n.Seq, n.Registered, n.LastUpdate = s.NextNodeSeq, c.At, c.At
		}
		s.Nodes[n.ID] = n
	case OpNodeStatus:
		n, ok := s.Nodes[c.Status.ID]
		if !ok {
			return fmt.Errorf("status of %s: %w", c.Status.ID, ErrUnknownNode)
		}
		if c.Status.Status == "OFFLINE" && n.Status != "OFFLINE" {
			n.OfflineSince = c.At
		} else if c.Status.Status != "OFFLINE" {
			n.OfflineSince = time.Time{}
		}
		n.Status, n.LastUpdate = c.Status.Status, c.At
		if c.Status.Status == "ACTIVE" {
			n.LastActive = c.At
		}
		s.Nodes[n.ID] = n
	case OpNodeRemove:
		if _, ok := s.Nodes[c.Name]; !ok {
			return fmt.Errorf("remove %s: %w", c.Name, ErrUnknownNode)
		}
		delete(s.Nodes, c.Name)
	case OpInit:
		if s.Initialized {
			return ErrInitialized
		}
		u := c.Init.Admin
		u.Perms = cloneMap(u.Perms)
		s.Users[u.Name] = u
		s.HostKey = append([]byte(nil), c.Init.HostKey...)
		s.Initialized = true
	case OpUserPut:
		u := *c.User
		old, exists := s.Users[u.Name]
		switch {
		case c.Put == PutCreate && exists:
			return fmt.Errorf("user %q %w", u.Name, ErrExists)
		case c.Put == PutUpdate && !exists:
			return fmt.Errorf("update user %q: %w", u.Name, ErrUnknownUser)
		}
		u.Perms = cloneMap(u.Perms)
		s.Users[u.Name] = u
		// A new password ends the sessions the old one opened (from
		// version 2 on: replaying older entries must keep their tokens).
		if exists && c.version() >= 2 && !bytes.Equal(old.Hash, u.Hash) {
			m.revokeTokens(u.Name)
		}
	case OpUserDelete:
		if _, ok := s.Users[c.Name]; !ok {
			return fmt.Errorf("delete user %s: %w", c.Name, ErrUnknownUser)
		}
		delete(s.Users, c.Name)
		m.revokeTokens(c.Name)
	case OpTokenPut:
		s.Tokens[c.Token.Hash] = *c.Token
	case OpTokenDelete:
		delete(s.Tokens, c.Name)
	case OpLicenseSet:
		s.License = append([]byte(nil), c.License...)
	case OpSlots:
		licensed := map[string]bool{}
		for _, id := range c.Licensed {
			licensed[id] = true
		}
		for id, n := range s.Nodes {
			n.Licensed = licensed[id]
			s.Nodes[id] = n
		}
	case OpSecretsKey, OpSecretsRotate:
		return m.applySecrets(c)
	default:
		if isScheduleOp(c.Op) {
			return m.applySchedule(c)
		}
		return m.applyMFT(c)
	}
	return nil
}

// revokeTokens deletes every token of user.
func (m *Machine) revokeTokens(user string) {
	for h, t := range m.s.Tokens {
		if t.User == user {
			delete(m.s.Tokens, h)
		}
	}
}

// Snapshot serialises the state. encoding/json sorts map keys, so equal
// states give equal bytes.
func (m *Machine) Snapshot() ([]byte, error) { return m.Freeze().Encode() }

// Frozen is the state as it was at one moment, for a snapshot encoded
// later: Raft takes a snapshot on its FSM goroutine, which applies no entry
// meanwhile (the lease renewals among them), so Freeze costs only a copy
// of the maps (State.clone: what they hold is replaced, never changed in
// place) and the encoding, 25-35 ms at the large state, runs in
// Persist beside the applies.
type Frozen struct{ doc snapshotDoc }

// Freeze copies the state for Encode.
func (m *Machine) Freeze() Frozen {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return Frozen{snapshotDoc{V: max(m.written, 1), State: m.s.clone()}}
}

// Encode serialises the frozen state, as Snapshot would have then.
func (f Frozen) Encode() ([]byte, error) {
	b, err := json.Marshal(f.doc)
	if err != nil {
		return nil, fmt.Errorf("snapshot state: %w", err)
	}
	return b, nil
}

// snapshotDoc is a snapshot: the state's fields and, beside them, the
// highest command version among the entries it holds (none before versions).
type snapshotDoc struct {
	V int `json:"v,omitempty"`
	State
}

// Restore replaces the state with a snapshot's. A snapshot written by a
// newer version is refused with ErrUnsupported and changes nothing: its
// state may hold what this binary would silently drop.
func (m *Machine) Restore(data []byte) error {
	var doc snapshotDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if doc.V > current {
		return fmt.Errorf("restore snapshot: written by version %d, newer than this binary understands (%d): %w", doc.V, current, ErrUnsupported)
	}
	s := doc.State
	if s.Nodes == nil {
		s.Nodes = map[string]Node{}
	}
	if s.Users == nil {
		s.Users = map[string]User{}
	}
	if s.Tokens == nil {
		s.Tokens = map[string]Token{}
	}
	s.initMFT()
	s.ix = newTransferIndex(s.Transfers)
	m.mu.Lock()
	m.s, m.written = s, max(doc.V, 1)
	m.mu.Unlock()
	return nil
}
