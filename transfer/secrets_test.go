package transfer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/udmg/gateway/fsm"
)

// secretsMachine is a replicated state for Secrets to use: a machine that
// holds the lease, so that fenced commands apply.
type secretsMachine struct {
	t *testing.T
	m *fsm.Machine
}

func newSecretsMachine(t *testing.T) *secretsMachine {
	s := &secretsMachine{t: t, m: fsm.New()}
	s.apply(fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: "a", Session: "s", Epoch: 1, Duration: 1}})
	return s
}

func (s *secretsMachine) apply(c fsm.Command) error {
	s.t.Helper()
	b, err := fsm.Encode(c)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.m.Apply(b).Err
}

func (s *secretsMachine) mustApply(c fsm.Command) {
	s.t.Helper()
	if err := s.apply(c); err != nil {
		s.t.Fatalf("%s: %v", c.Op, err)
	}
}

func kek(b byte, source string) KEK { return KEK{Key: bytes.Repeat([]byte{b}, 32), Source: source} }

func newTestSecrets(t *testing.T, k KEK, legacy string, sm *secretsMachine) *Secrets {
	t.Helper()
	s, err := NewSecrets(k, legacy)
	if err != nil {
		t.Fatal(err)
	}
	s.Bind(func() *fsm.SecretsKeys { return sm.m.State().Secrets })
	return s
}

// fill puts one value of every sealed kind into the state, sealed by s.
func fill(t *testing.T, sm *secretsMachine, seal func([]byte) (string, error)) map[string]string {
	t.Helper()
	plain := map[string]string{"host": "-----BEGIN OPENSSH PRIVATE KEY----- host", "tls": "tls key", "pw": "bob's password", "pk": "bob's key"}
	s := func(k string) string {
		v, err := seal([]byte(plain[k]))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	sm.mustApply(fsm.Command{Op: fsm.OpInit, Init: &fsm.InitArgs{Admin: fsm.User{Name: "admin"}, HostKey: []byte(s("host"))}})
	sm.mustApply(fsm.Command{Op: fsm.OpServerPut, Server: &fsm.Server{Name: "ftps", Protocol: fsm.ProtoFTP, Port: 2121, TLS: true, TLSKey: s("tls")}})
	sm.mustApply(fsm.Command{Op: fsm.OpPartnerPut, Partner: &fsm.Partner{Name: "p", Protocol: fsm.ProtoSFTP, Address: "h:22"}})
	sm.mustApply(fsm.Command{Op: fsm.OpRemoteAccountPut, RemoteAccount: &fsm.RemoteAccount{Partner: "p", Login: "bob", Password: s("pw"), PrivateKey: s("pk")}})
	return plain
}

// opened opens every sealed value of the state with s, in the order of
// fsm.State.Sealed (host key, TLS key, password, private key).
func opened(s *Secrets, st fsm.State) ([]string, error) {
	var out []string
	for _, v := range st.Sealed() {
		p, err := s.Open(v.Old)
		if err != nil {
			return out, err
		}
		out = append(out, string(p))
	}
	return out, nil
}

func TestSecretsKeyInState(t *testing.T) {
	sm := newSecretsMachine(t)
	s := newTestSecrets(t, kek(1, "[cluster] JoinToken"), "", sm)
	if _, err := s.Seal([]byte("x")); err == nil {
		t.Fatal("Seal worked before the cluster had a key")
	}
	key, err := s.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	sm.mustApply(fsm.Command{Op: fsm.OpSecretsKey, Epoch: 1, Secrets: &fsm.SecretsArgs{Key: key}})
	plain := fill(t, sm, s.Seal)
	got, err := opened(s, sm.m.State())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{plain["host"], plain["tls"], plain["pw"], plain["pk"]}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("opened %q, want %q", got, want)
	}
	// The state on disk (a snapshot, as in a copied DataDir) holds neither
	// a secret nor the data key in clear.
	snap, err := sm.m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plain {
		if bytes.Contains(snap, []byte(p)) {
			t.Errorf("snapshot holds %q in clear", p)
		}
	}
}

// TestCopiedStateWithoutKEKOpensNothing is issue 12's theft of the Raft log: the
// whole state, without this cluster's key-encryption key (another token,
// another cluster's key), opens neither the data key nor any value.
func TestCopiedStateWithoutKEKOpensNothing(t *testing.T) {
	sm := newSecretsMachine(t)
	s := newTestSecrets(t, kek(1, "[cluster] JoinToken"), "", sm)
	key, _ := s.NewKey()
	sm.mustApply(fsm.Command{Op: fsm.OpSecretsKey, Epoch: 1, Secrets: &fsm.SecretsArgs{Key: key}})
	fill(t, sm, s.Seal)

	snap, _ := sm.m.Snapshot()
	copied := fsm.New()
	if err := copied.Restore(snap); err != nil {
		t.Fatal(err)
	}
	thief, err := NewSecrets(kek(2, "[cluster] JoinToken"), "")
	if err != nil {
		t.Fatal(err)
	}
	thief.Bind(func() *fsm.SecretsKeys { return copied.State().Secrets })
	err = thief.CheckKey(copied.State().Secrets.Current)
	if err == nil || !strings.Contains(err.Error(), "JoinToken") || !strings.Contains(err.Error(), "AESPassphrase") {
		t.Errorf("CheckKey with another KEK = %v, want an error naming JoinToken and AESPassphrase", err)
	}
	for _, v := range copied.State().Sealed() {
		if p, err := thief.Open(v.Old); err == nil {
			t.Errorf("%s opened without the KEK: %q", v.Ref, p)
		}
	}
}

// TestRotate checks that after `secrets rotate` every value still opens,
// under a new key, and that values sealed under the old key by a write that
// raced the rotation still open until the next one.
func TestRotate(t *testing.T) {
	sm := newSecretsMachine(t)
	s := newTestSecrets(t, kek(1, "[cluster] JoinToken"), "", sm)
	key, _ := s.NewKey()
	sm.mustApply(fsm.Command{Op: fsm.OpSecretsKey, Epoch: 1, Secrets: &fsm.SecretsArgs{Key: key}})
	fill(t, sm, s.Seal)
	before := sm.m.State()
	want, err := opened(s, before)
	if err != nil {
		t.Fatal(err)
	}
	late, _ := s.Seal([]byte("sealed before the rotation, stored after"))

	rot, err := s.Rotation(before)
	if err != nil {
		t.Fatal(err)
	}
	sm.mustApply(fsm.Command{Op: fsm.OpSecretsRotate, Secrets: rot})
	after := sm.m.State()
	if after.Secrets.Current == before.Secrets.Current || after.Secrets.Generation != 2 {
		t.Fatalf("keys after rotation: %+v", *after.Secrets)
	}
	got, err := opened(s, after)
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("after rotation opened %q, want %q", got, want)
	}
	for i, v := range after.Sealed() {
		if v.Old == before.Sealed()[i].Old {
			t.Errorf("%s not resealed", v.Ref)
		}
	}
	// The values are under the new key alone: a Secrets that knows only
	// the new key opens them.
	onlyNew := &secretsMachine{t: t, m: fsm.New()}
	snap, _ := sm.m.Snapshot()
	onlyNew.m.Restore(snap)
	st := onlyNew.m.State()
	st.Secrets = &fsm.SecretsKeys{Current: st.Secrets.Current}
	s2 := newTestSecrets(t, kek(1, "x"), "", onlyNew)
	s2.Bind(func() *fsm.SecretsKeys { return st.Secrets })
	if _, err := opened(s2, st); err != nil {
		t.Errorf("a value still needs the old key: %v", err)
	}
	if _, err := s.Open(late); err != nil {
		t.Errorf("a value sealed just before the rotation: %v", err)
	}
	// A rotation computed from the state before is refused.
	if err := sm.apply(fsm.Command{Op: fsm.OpSecretsRotate, Secrets: rot}); !errors.Is(err, fsm.ErrSecretsChanged) {
		t.Errorf("replayed rotation: %v, want ErrSecretsChanged", err)
	}
}

// TestUpgradeFromKeyFile is the previous release's layout: values sealed
// with <GatewayHome>/passphrase.aes (hex key or passphrase) and no key in
// the state. LegacyKey moves the file's key in; every value opens.
func TestUpgradeFromKeyFile(t *testing.T) {
	for _, content := range []string{hex.EncodeToString(bytes.Repeat([]byte{7}, 32)) + "\n", "an operator's passphrase\n"} {
		dir := t.TempDir()
		legacy := filepath.Join(dir, "home", "passphrase.aes")
		os.MkdirAll(filepath.Dir(legacy), 0o700)
		if err := os.WriteFile(legacy, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		// The previous release: AES-GCM under the file's key (32 bytes in
		// hex, or derived from a passphrase), "aes1:".
		oldKey, err := hex.DecodeString(strings.TrimSpace(content))
		if err != nil {
			h := sha256.Sum256([]byte("udmg-aes-passphrase:" + strings.TrimSpace(content)))
			oldKey = h[:]
		}
		oldAEAD, _ := newAEAD(oldKey)
		sm := newSecretsMachine(t)
		plain := fill(t, sm, func(p []byte) (string, error) { return seal(oldAEAD, p) })

		s := newTestSecrets(t, kek(1, "[cluster] JoinToken"), legacy, sm)
		key, path, err := s.LegacyKey()
		if err != nil || key == "" || path != legacy {
			t.Fatalf("LegacyKey = %q, %q, %v", key, path, err)
		}
		sm.mustApply(fsm.Command{Op: fsm.OpSecretsKey, Epoch: 1, Secrets: &fsm.SecretsArgs{Key: key}})
		// The file no longer matters: overwritten (a receive rule) or gone.
		os.WriteFile(legacy, []byte("overwritten by a partner's file"), 0o600)
		got, err := opened(s, sm.m.State())
		if err != nil {
			t.Fatalf("after upgrade (%q): %v", content, err)
		}
		if got[2] != plain["pw"] || got[0] != plain["host"] {
			t.Errorf("after upgrade opened %q", got)
		}
	}
	s, _ := NewSecrets(kek(1, "x"), filepath.Join(t.TempDir(), "passphrase.aes"))
	if key, _, err := s.LegacyKey(); key != "" || err != nil {
		t.Errorf("LegacyKey without a file = %q, %v", key, err)
	}
}

func TestKEKInDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	a, err := KEKInDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "secrets.kek"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets.kek mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := KEKInDataDir(dir)
	if err != nil || !bytes.Equal(a.Key, b.Key) {
		t.Errorf("second start: %v, same key %v", err, bytes.Equal(a.Key, b.Key))
	}
}

// TestJoinTokenRotation follows a JoinToken rotation's rounds ("O,T", then
// "T,O", then "T"): a node whose first token is new opens the key sealed
// with the old one, says it needs a rewrap, and after the rotation it
// computes, a node that knows only the new token opens every value.
func TestJoinTokenRotation(t *testing.T) {
	o, tk := kek(1, "[cluster] JoinToken"), kek(2, "[cluster] JoinToken")
	sm := newSecretsMachine(t)
	old := newTestSecrets(t, o, "", sm)
	key, _ := old.NewKey()
	sm.mustApply(fsm.Command{Op: fsm.OpSecretsKey, Epoch: 1, Secrets: &fsm.SecretsArgs{Key: key}})
	fill(t, sm, old.Seal)
	want, _ := opened(old, sm.m.State())

	first, err := NewSecrets(o, "", tk) // round 1: "O,T"
	if err != nil {
		t.Fatal(err)
	}
	first.Bind(func() *fsm.SecretsKeys { return sm.m.State().Secrets })
	if first.NeedsRewrap(key) {
		t.Error("round 1 (old token first) wants a rewrap")
	}
	second, _ := NewSecrets(tk, "", o) // round 2: "T,O"
	second.Bind(func() *fsm.SecretsKeys { return sm.m.State().Secrets })
	if err := second.CheckKey(key); err != nil || !second.NeedsRewrap(key) {
		t.Fatalf("round 2: CheckKey %v, NeedsRewrap %v; want it opened and needing a rewrap", err, second.NeedsRewrap(key))
	}
	rot, err := second.Rotation(sm.m.State())
	if err != nil {
		t.Fatal(err)
	}
	sm.mustApply(fsm.Command{Op: fsm.OpSecretsRotate, Secrets: rot})
	if second.NeedsRewrap(sm.m.State().Secrets.Current) {
		t.Error("still needs a rewrap after the rotation")
	}
	third := newTestSecrets(t, tk, "", sm) // round 3: "T"
	got, err := opened(third, sm.m.State())
	if err != nil || strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("round 3 opened %q, %v; want %q", got, err, want)
	}
	if _, err := opened(first, sm.m.State()); err != nil {
		t.Errorf("a round-1 node (O,T) after the rewrap: %v", err)
	}
}
