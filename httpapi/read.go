package httpapi

import (
	"maps"
	"slices"

	"github.com/udmg/gateway/fsm"
)

// Requests read the replicated state in place (Node.Read) and copy out only
// the map or the object they answer with, never the whole state: a request
// then costs the same however many accounts and transfers the state holds.
// Nothing is written to the client while the read lock is held.

// lookup is m[key] of the map pick chooses.
func lookup[K comparable, V any](n Node, pick func(*fsm.State) map[K]V, key K) (V, bool) {
	var v V
	var ok bool
	n.Read(func(s *fsm.State) { v, ok = pick(s)[key] })
	return v, ok
}

// copyOf is a copy of the map pick chooses (values shared: the machine
// replaces objects, it never changes one in place).
func copyOf[K comparable, V any](n Node, pick func(*fsm.State) map[K]V) map[K]V {
	var m map[K]V
	n.Read(func(s *fsm.State) { m = maps.Clone(pick(s)) })
	return m
}

// The maps of the state, for lookup and copyOf.
func ofServers(s *fsm.State) map[string]fsm.Server               { return s.Servers }
func ofAccounts(s *fsm.State) map[string]fsm.LocalAccount        { return s.Accounts }
func ofPartners(s *fsm.State) map[string]fsm.Partner             { return s.Partners }
func ofRemoteAccounts(s *fsm.State) map[string]fsm.RemoteAccount { return s.RemoteAccounts }
func ofRules(s *fsm.State) map[string]fsm.Rule                   { return s.Rules }
func ofKeys(s *fsm.State) map[string]fsm.PGPKey                  { return s.Keys }
func ofSecrets(s *fsm.State) map[string]fsm.Secret               { return s.SecretValues }
func ofTransfers(s *fsm.State) map[uint64]fsm.Transfer           { return s.Transfers }
func ofUsers(s *fsm.State) map[string]fsm.User                   { return s.Users }
func ofTokens(s *fsm.State) map[string]fsm.Token                 { return s.Tokens }
func ofNodes(s *fsm.State) map[string]fsm.Node                   { return s.Nodes }
func ofSchedules(s *fsm.State) map[string]fsm.Schedule           { return s.Schedules }

// filtered is a copy of the entries of the map pick chooses that keep
// accepts (a server's accounts, a partner's remote accounts).
func filtered[K comparable, V any](n Node, pick func(*fsm.State) map[K]V, keep func(V) bool) map[K]V {
	out := map[K]V{}
	n.Read(func(s *fsm.State) {
		for k, v := range pick(s) {
			if keep(v) {
				out[k] = v
			}
		}
	})
	return out
}

// licenseState is the part of the state a license view shows: the
// license document and the node registry.
func (a *API) licenseState() fsm.State {
	var st fsm.State
	a.node.Read(func(s *fsm.State) { st.License, st.Nodes = slices.Clone(s.License), maps.Clone(s.Nodes) })
	return st
}
