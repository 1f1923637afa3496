package fsm

import (
	"errors"
	"testing"
)

// sealedState is a machine with a data key and one value of every sealed
// kind.
func sealedState(t *testing.T) *Machine {
	t.Helper()
	m := New()
	mustApply(t, m, lease(OpLeaseAcquire, "a", "s1", 1))
	for _, c := range []Command{
		{Op: OpSecretsKey, Epoch: 1, Secrets: &SecretsArgs{Key: "k1"}},
		{Op: OpInit, Init: &InitArgs{Admin: User{Name: "admin"}, HostKey: []byte("host@k1")}},
		{Op: OpServerPut, Server: &Server{Name: "ftps", Protocol: ProtoFTP, Port: 2121, TLS: true, TLSKey: "tls@k1"}},
		{Op: OpPartnerPut, Partner: &Partner{Name: "p", Protocol: ProtoSFTP, Address: "h:22"}},
		{Op: OpRemoteAccountPut, RemoteAccount: &RemoteAccount{Partner: "p", Login: "bob", Password: "pw@k1", PrivateKey: "pk@k1"}},
	} {
		if r := mustApply(t, m, c); r.Err != nil {
			t.Fatalf("%s: %v", c.Op, r.Err)
		}
	}
	return m
}

// rotation reseals every value of m's state by replacing "@k1" with to.
func rotation(m *Machine, key string) *SecretsArgs {
	st := m.State()
	a := &SecretsArgs{Key: key, Old: st.Secrets.Current}
	for _, v := range st.Sealed() {
		v.New = v.Old + "->" + key
		a.Values = append(a.Values, v)
	}
	return a
}

func TestSecretsKeyOnce(t *testing.T) {
	m := sealedState(t)
	r := mustApply(t, m, Command{Op: OpSecretsKey, Epoch: 1, Secrets: &SecretsArgs{Key: "other"}})
	if !errors.Is(r.Err, ErrSecretsKeySet) {
		t.Fatalf("second secrets.key: %v, want ErrSecretsKeySet", r.Err)
	}
	if got := m.State().Secrets.Current; got != "k1" {
		t.Errorf("key = %q after a refused second key, want k1", got)
	}
	if r := mustApply(t, New(), Command{Op: OpSecretsKey, Secrets: &SecretsArgs{}}); r.Err == nil {
		t.Error("secrets.key without a key was applied")
	}
}

func TestSecretsRotate(t *testing.T) {
	m := sealedState(t)
	if n := len(m.State().Sealed()); n != 4 {
		t.Fatalf("Sealed lists %d values, want 4 (host key, TLS key, password, private key)", n)
	}
	if r := mustApply(t, m, Command{Op: OpSecretsRotate, Secrets: rotation(m, "k2")}); r.Err != nil {
		t.Fatal(r.Err)
	}
	st := m.State()
	if st.Secrets.Current != "k2" || st.Secrets.Previous != "k1" || st.Secrets.Generation != 2 {
		t.Errorf("keys after rotation = %+v, want current k2, previous k1, generation 2", *st.Secrets)
	}
	want := map[string]string{"hostKey": "host@k1->k2", "server.tlsKey ftps": "tls@k1->k2",
		"remoteAccount.password " + AccountKey("p", "bob"): "pw@k1->k2", "remoteAccount.privateKey " + AccountKey("p", "bob"): "pk@k1->k2"}
	for _, v := range st.Sealed() {
		if want[v.Ref.String()] != v.Old {
			t.Errorf("%s = %q after rotation, want %q", v.Ref, v.Old, want[v.Ref.String()])
		}
	}
}

// TestSecretsRotateRefusesAChangedState checks that a rotation computed
// from a state that changed since is refused whole: a value written
// meanwhile would otherwise stay under a key the next rotation drops.
func TestSecretsRotateRefusesAChangedState(t *testing.T) {
	cases := []struct {
		name   string
		change Command
	}{
		{"a new sealed value", Command{Op: OpRemoteAccountPut, RemoteAccount: &RemoteAccount{Partner: "p", Login: "eve", Password: "pw2@k1"}}},
		{"a changed sealed value", Command{Op: OpRemoteAccountPut, RemoteAccount: &RemoteAccount{Partner: "p", Login: "bob", Password: "new@k1", PrivateKey: "pk@k1"}}},
		{"a deleted sealed value", Command{Op: OpServerDelete, Name: "ftps"}},
		{"another rotation", Command{Op: OpSecretsRotate}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := sealedState(t)
			rot := rotation(m, "k2")
			if tc.change.Op == OpSecretsRotate {
				tc.change.Secrets = rotation(m, "k3")
			}
			if r := mustApply(t, m, tc.change); r.Err != nil {
				t.Fatal(r.Err)
			}
			before := m.State()
			r := mustApply(t, m, Command{Op: OpSecretsRotate, Secrets: rot})
			if !errors.Is(r.Err, ErrSecretsChanged) {
				t.Fatalf("stale rotation: %v, want ErrSecretsChanged", r.Err)
			}
			after := m.State()
			if after.Secrets.Current != before.Secrets.Current || len(after.Sealed()) != len(before.Sealed()) {
				t.Error("a refused rotation changed the state")
			}
			for i, v := range after.Sealed() {
				if v != before.Sealed()[i] {
					t.Errorf("%s changed by a refused rotation", v.Ref)
				}
			}
		})
	}
}

func TestSecretsKeysSurviveSnapshot(t *testing.T) {
	m := sealedState(t)
	mustApply(t, m, Command{Op: OpSecretsRotate, Secrets: rotation(m, "k2")})
	b, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := New()
	if err := r.Restore(b); err != nil {
		t.Fatal(err)
	}
	if got := r.State().Secrets; got == nil || *got != *m.State().Secrets {
		t.Errorf("restored keys %+v, want %+v", got, m.State().Secrets)
	}
}
