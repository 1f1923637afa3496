package fsm

import (
	"maps"
	"slices"
)

// Lookups of single objects for the hot paths (logins, API requests, engine
// ticks, the lease loop): each copies only what it returns, under the read
// lock, so its cost does not grow with the state. State() copies everything
// and is kept for the few readers that need one consistent snapshot.

// User returns the administrator name, with its own copy of the hash and
// permissions.
func (m *Machine) User(name string) (User, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	u, ok := m.s.Users[name]
	u.Hash, u.Perms = slices.Clone(u.Hash), cloneMap(u.Perms)
	return u, ok
}

// Token returns the bearer token whose secret hashes to hash.
func (m *Machine) Token(hash string) (Token, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.s.Tokens[hash]
	return t, ok
}

// Account returns the local account login of server, with its own copy of
// the hash and keys.
func (m *Machine) Account(server, login string) (LocalAccount, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	a, ok := m.s.Accounts[AccountKey(server, login)]
	a.PasswordHash, a.PublicKeys = slices.Clone(a.PasswordHash), slices.Clone(a.PublicKeys)
	return a, ok
}

// Transfer returns transfer id.
func (m *Machine) Transfer(id uint64) (Transfer, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.s.Transfers[id]
	return t, ok
}

// Servers is a copy of the local servers alone (a handful), which the
// ACTIVE node compares with what it runs every poll.
func (m *Machine) Servers() map[string]Server {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return maps.Clone(m.s.Servers)
}

// Nodes is a copy of the node registry alone (one entry per member), which
// the leader's reconcile and lease loops read every HeartbeatCheck.
func (m *Machine) Nodes() map[string]Node {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return maps.Clone(m.s.Nodes)
}

// License is a copy of the signed license document in force (nil:
// evaluation).
func (m *Machine) License() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.s.License)
}
