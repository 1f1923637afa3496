package fsm

import (
	"errors"
	"fmt"
	"sort"
)

// The secrets key's commands. The key itself (the data key that seals
// partner passwords and keys, FTPS keys and the SSH host key) is opaque
// here: it arrives sealed with the cluster's key-encryption key, which never
// enters the log.
const (
	// OpSecretsKey sets the cluster's data key once (bootstrap, or the
	// first ACTIVE term after an upgrade from the key file layout).
	OpSecretsKey Op = "secrets.key"
	// OpSecretsRotate replaces the data key and every value sealed with
	// it in one entry, so that no value is ever left under a dropped key.
	OpSecretsRotate Op = "secrets.rotate"
)

// SecretsKeys is the data key in the state, sealed with the key-encryption
// key. Previous is the key before the last rotation, kept so that a value
// sealed by a write that raced the rotation still opens; the next rotation
// drops it. The machine replaces the whole value on change, never mutates it.
type SecretsKeys struct {
	Current    string `json:"current"`
	Previous   string `json:"previous,omitempty"`
	Generation uint64 `json:"generation"`
}

// SecretsArgs is the body of the secrets commands.
type SecretsArgs struct {
	// Key is the new data key, sealed with the key-encryption key.
	Key string `json:"key"`
	// Old is the current key the rotation was computed from (Current).
	Old string `json:"old,omitempty"`
	// Values are the resealed values of a rotation.
	Values []ResealedValue `json:"values,omitempty"`
}

// ResealedValue is one sealed field of the state, before and after a
// rotation; Old must still be its value when the rotation is applied.
type ResealedValue struct {
	Ref SealedRef `json:"ref"`
	Old string    `json:"old"`
	New string    `json:"new"`
}

// SealedRef names one sealed field of the state.
type SealedRef struct {
	Kind string `json:"kind"` // "hostKey", "server.tlsKey", "remoteAccount.password", "remoteAccount.privateKey", "pgpKey"
	Key  string `json:"key,omitempty"`
}

// String is how errors and logs name the field.
func (r SealedRef) String() string {
	if r.Key == "" {
		return r.Kind
	}
	return r.Kind + " " + r.Key
}

// ErrSecretsKeySet refuses a second OpSecretsKey: the cluster has its key.
var ErrSecretsKeySet = errors.New("the cluster already has a secrets key")

// ErrSecretsChanged refuses a rotation computed from a state that has
// changed since (a new key or a new or changed sealed value): the proposer
// computes it again.
var ErrSecretsChanged = errors.New("sealed values changed during the rotation")

// Sealed lists every non-empty sealed field of the state, in a stable
// order. A new sealed field is added here and in setSealed, nowhere else.
func (s State) Sealed() []ResealedValue {
	var out []ResealedValue
	add := func(kind, key, v string) {
		if v != "" {
			out = append(out, ResealedValue{Ref: SealedRef{Kind: kind, Key: key}, Old: v})
		}
	}
	add("hostKey", "", string(s.HostKey))
	for _, k := range sortedKeys(s.Servers) {
		add("server.tlsKey", k, s.Servers[k].TLSKey)
	}
	for _, k := range sortedKeys(s.RemoteAccounts) {
		add("remoteAccount.password", k, s.RemoteAccounts[k].Password)
		add("remoteAccount.privateKey", k, s.RemoteAccounts[k].PrivateKey)
	}
	for _, k := range sortedKeys(s.Keys) {
		add("pgpKey", k, s.Keys[k].Armored)
	}
	for _, k := range sortedKeys(s.SecretValues) {
		add("secret", k, s.SecretValues[k].Value)
	}
	return out
}

func (s *State) setSealed(r SealedRef, v string) {
	switch r.Kind {
	case "hostKey":
		s.HostKey = []byte(v)
	case "server.tlsKey":
		srv := s.Servers[r.Key]
		srv.TLSKey = v
		s.Servers[r.Key] = srv
	case "remoteAccount.password":
		a := s.RemoteAccounts[r.Key]
		a.Password = v
		s.RemoteAccounts[r.Key] = a
	case "remoteAccount.privateKey":
		a := s.RemoteAccounts[r.Key]
		a.PrivateKey = v
		s.RemoteAccounts[r.Key] = a
	case "pgpKey":
		k := s.Keys[r.Key]
		k.Armored = v
		s.Keys[r.Key] = k
	case "secret":
		x := s.SecretValues[r.Key]
		x.Value = v
		s.SecretValues[r.Key] = x
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func decodeSecrets(c Command) (missing bool) {
	return c.Secrets == nil || c.Secrets.Key == "" || (c.Op == OpSecretsRotate && c.Secrets.Old == "")
}

func (m *Machine) applySecrets(c Command) error {
	s := &m.s
	a := c.Secrets
	switch c.Op {
	case OpSecretsKey:
		if s.Secrets != nil {
			return ErrSecretsKeySet
		}
		s.Secrets = &SecretsKeys{Current: a.Key, Generation: 1}
	case OpSecretsRotate:
		if s.Secrets == nil || s.Secrets.Current != a.Old {
			return fmt.Errorf("rotate: the secrets key changed: %w", ErrSecretsChanged)
		}
		// The rotation must cover exactly the sealed values there are now.
		now := s.Sealed()
		if len(now) != len(a.Values) {
			return fmt.Errorf("rotate: %d sealed values, rotation covers %d: %w", len(now), len(a.Values), ErrSecretsChanged)
		}
		for i, v := range now {
			if a.Values[i].Ref != v.Ref || a.Values[i].Old != v.Old || a.Values[i].New == "" {
				return fmt.Errorf("rotate: %s: %w", v.Ref, ErrSecretsChanged)
			}
		}
		for _, v := range a.Values {
			s.setSealed(v.Ref, v.New)
		}
		s.Secrets = &SecretsKeys{Current: a.Key, Previous: a.Old, Generation: s.Secrets.Generation + 1}
	}
	return nil
}
