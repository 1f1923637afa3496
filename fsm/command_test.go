package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPutModes: a create finds the object absent or is refused, an update
// finds it present or is refused, and a refused put changes nothing.
func TestPutModes(t *testing.T) {
	cases := []struct {
		name string
		put  func(PutMode, string) Command // the value tells two puts apart
		get  func(State) (string, bool)
	}{
		{"server", func(m PutMode, v string) Command {
			return Command{Op: OpServerPut, Put: m, Server: &Server{Name: "s", Protocol: ProtoSFTP, Port: 2222, Root: v}}
		}, func(s State) (string, bool) { o, ok := s.Servers["s"]; return o.Root, ok }},
		{"account", func(m PutMode, v string) Command {
			return Command{Op: OpAccountPut, Put: m, Account: &LocalAccount{Server: "base", Login: "a", PasswordHash: []byte(v)}}
		}, func(s State) (string, bool) {
			o, ok := s.Accounts[AccountKey("base", "a")]
			return string(o.PasswordHash), ok
		}},
		{"partner", func(m PutMode, v string) Command {
			return Command{Op: OpPartnerPut, Put: m, Partner: &Partner{Name: "p", Protocol: ProtoSFTP, Address: v}}
		}, func(s State) (string, bool) { o, ok := s.Partners["p"]; return o.Address, ok }},
		{"remote account", func(m PutMode, v string) Command {
			return Command{Op: OpRemoteAccountPut, Put: m, RemoteAccount: &RemoteAccount{Partner: "base", Login: "r", Password: v}}
		}, func(s State) (string, bool) {
			o, ok := s.RemoteAccounts[AccountKey("base", "r")]
			return o.Password, ok
		}},
		{"rule", func(m PutMode, v string) Command {
			return Command{Op: OpRulePut, Put: m, Rule: &Rule{Name: "r", Send: true, Path: v}}
		}, func(s State) (string, bool) { o, ok := s.Rules[RuleKey("r", true)]; return o.Path, ok }},
		{"user", func(m PutMode, v string) Command {
			return Command{Op: OpUserPut, Put: m, User: &User{Name: "u", Hash: []byte(v)}}
		}, func(s State) (string, bool) { o, ok := s.Users["u"]; return string(o.Hash), ok }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			mustApply(t, m, Command{Op: OpServerPut, Server: &Server{Name: "base", Protocol: ProtoSFTP, Port: 22}})
			mustApply(t, m, Command{Op: OpPartnerPut, Partner: &Partner{Name: "base", Protocol: ProtoSFTP, Address: "h:22"}})
			check := func(step string, wantVal string, wantOK bool) {
				t.Helper()
				v, ok := tc.get(m.State())
				if ok != wantOK || v != wantVal {
					t.Fatalf("%s: object %q present %v, want %q present %v", step, v, ok, wantVal, wantOK)
				}
			}
			if r := mustApply(t, m, tc.put(PutUpdate, "one")); !errors.Is(r.Err, ErrUnknownObject) && !errors.Is(r.Err, ErrUnknownUser) {
				t.Fatalf("update of a missing %s: %v, want unknown", tc.name, r.Err)
			}
			check("refused update", "", false)
			if r := mustApply(t, m, tc.put(PutCreate, "one")); r.Err != nil {
				t.Fatalf("create: %v", r.Err)
			}
			check("create", "one", true)
			frozen, frozenAt := m.Freeze(), encodeNow(t, m)
			defer frozenStill(t, frozen, frozenAt, "after the updates")
			before, _ := m.Snapshot()
			r := mustApply(t, m, tc.put(PutCreate, "two"))
			if !errors.Is(r.Err, ErrExists) || !strings.Contains(r.Err.Error(), tc.name) {
				t.Fatalf("second create: %v, want an error naming the %s that exists", r.Err, tc.name)
			}
			if after, _ := m.Snapshot(); !bytes.Equal(before, after) {
				t.Fatal("refused create changed the state")
			}
			if r := mustApply(t, m, tc.put(PutUpdate, "three")); r.Err != nil {
				t.Fatalf("update: %v", r.Err)
			}
			check("update", "three", true)
			if r := mustApply(t, m, tc.put("", "four")); r.Err != nil {
				t.Fatalf("put without a mode: %v", r.Err)
			}
			check("put without a mode", "four", true)
		})
	}
	if r := New().Apply([]byte(`{"op":"rule.put","v":2,"put":"upsert","rule":{"name":"r"}}`)); r.Err == nil || errors.Is(r.Err, ErrUnsupported) {
		t.Fatalf("unknown put mode: %v, want a refusal", r.Err)
	}
}

// TestUnsupportedHaltsMachine: an entry of a newer version or with an
// unknown op is not skipped: it and everything after it are refused with
// ErrUnsupported, and the error says what to do.
func TestUnsupportedHaltsMachine(t *testing.T) {
	for _, tc := range []struct {
		entry string
		want  []string
	}{
		{fmt.Sprintf(`{"op":"user.put","v":%d,"user":{"name":"u","hash":"aA=="}}`, Version+1), []string{fmt.Sprintf(`op "user.put" version %d is newer than this binary understands (%d)`, Version+1, Version), "upgrade this node"}},
		// A newer release may reshape a body: its version still says so.
		{fmt.Sprintf(`{"op":"user.put","v":%d,"user":"now a string"}`, Version+1), []string{fmt.Sprintf(`op "user.put" version %d is newer`, Version+1)}},
		{`{"op":"quota.set","v":2}`, []string{fmt.Sprintf(`op "quota.set" (version 2) is unknown to this binary (version %d)`, Version), "upgrade this node"}},
		{`{"op":"quota.set"}`, []string{`op "quota.set" (version 1) is unknown`}},
	} {
		m := New()
		mustApply(t, m, Command{Op: OpUserPut, User: &User{Name: "a", Hash: []byte("h")}})
		before, _ := m.Snapshot()
		r := m.Apply([]byte(tc.entry))
		if !errors.Is(r.Err, ErrUnsupported) {
			t.Fatalf("%s: err = %v, want ErrUnsupported", tc.entry, r.Err)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.Err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tc.entry, r.Err, w)
			}
		}
		next := mustApply(t, m, Command{Op: OpUserPut, User: &User{Name: "b", Hash: []byte("h")}})
		if !errors.Is(next.Err, ErrUnsupported) {
			t.Fatalf("%s: the entry after it was applied (err %v)", tc.entry, next.Err)
		}
		if after, _ := m.Snapshot(); !bytes.Equal(before, after) {
			t.Fatalf("%s: halted machine changed its state", tc.entry)
		}
	}
	// A refusal of a known version is not fatal: the next entry applies.
	m := New()
	if r := m.Apply([]byte(`{"op":"user.put","v":2}`)); r.Err == nil || errors.Is(r.Err, ErrUnsupported) {
		t.Fatalf("body missing: %v, want a plain refusal", r.Err)
	}
	if r := mustApply(t, m, Command{Op: OpUserPut, User: &User{Name: "b", Hash: []byte("h")}}); r.Err != nil {
		t.Fatalf("entry after a refused one: %v", r.Err)
	}
}

// TestPreviousReleaseEntries: entries as the release before versions wrote
// them (no "v", no "put") still apply, with that release's meaning.
func TestPreviousReleaseEntries(t *testing.T) {
	m := New()
	for _, e := range []string{
		`{"op":"server.put","at":"2026-11-23T09:00:00Z","server":{"name":"sftp","protocol":"sftp","port":2222,"enabled":true}}`,
		`{"op":"server.put","at":"2026-11-23T09:00:01Z","server":{"name":"sftp","protocol":"sftp","port":2223,"enabled":true}}`,
		`{"op":"user.put","at":"2026-11-23T09:00:00Z","user":{"name":"u","hash":"aDE="}}`,
		`{"op":"token.put","at":"2026-11-23T09:00:00Z","token":{"hash":"t1","user":"u","expires":"2026-11-24T09:00:00Z"}}`,
		// A password change of that release kept the tokens: replaying it
		// must too, or nodes restored from different snapshots disagree.
		`{"op":"user.put","at":"2026-11-23T09:00:02Z","user":{"name":"u","hash":"aDI="}}`,
	} {
		if r := m.Apply([]byte(e)); r.Err != nil {
			t.Fatalf("%s: %v", e, r.Err)
		}
	}
	s := m.State()
	if s.Servers["sftp"].Port != 2223 {
		t.Fatalf("version-1 put did not replace: %+v", s.Servers["sftp"])
	}
	if string(s.Users["u"].Hash) != "h2" {
		t.Fatalf("user hash %q", s.Users["u"].Hash)
	}
	if _, ok := s.Tokens["t1"]; !ok {
		t.Fatal("a version-1 password change revoked a token")
	}
}

// TestPasswordChangeRevokesTokens: a version-2 user.put with another
// password hash deletes that user's tokens and no one else's; one that
// keeps the hash (permissions only) keeps them.
func TestPasswordChangeRevokesTokens(t *testing.T) {
	m := New()
	mustApply(t, m, Command{Op: OpUserPut, Put: PutCreate, User: &User{Name: "u", Hash: []byte("h1")}})
	mustApply(t, m, Command{Op: OpTokenPut, Token: &Token{Hash: "t1", User: "u", Expires: t0}})
	mustApply(t, m, Command{Op: OpTokenPut, Token: &Token{Hash: "t2", User: "other", Expires: t0}})
	mustApply(t, m, Command{Op: OpUserPut, Put: PutUpdate, User: &User{Name: "u", Hash: []byte("h1"), Perms: map[string]string{"users": "r--"}}})
	if _, ok := m.State().Tokens["t1"]; !ok {
		t.Fatal("a permission change revoked the user's token")
	}
	mustApply(t, m, Command{Op: OpUserPut, Put: PutUpdate, User: &User{Name: "u", Hash: []byte("h2")}})
	s := m.State()
	if _, ok := s.Tokens["t1"]; ok {
		t.Fatal("token survives the password change")
	}
	if _, ok := s.Tokens["t2"]; !ok {
		t.Fatal("another user's token was revoked")
	}
}

// TestEncodeStampsVersion: what this binary writes carries Version.
func TestEncodeStampsVersion(t *testing.T) {
	b, err := Encode(Command{Op: OpNodeRemove, Name: "n"})
	if err != nil {
		t.Fatal(err)
	}
	var head struct{ V int }
	if err := json.Unmarshal(b, &head); err != nil || head.V != Version {
		t.Fatalf("encoded %s: version %d, want %d", b, head.V, Version)
	}
}

// TestSnapshotVersion: a snapshot says which version wrote it; one of a
// newer version is refused and changes nothing, one of the release before
// versions restores.
func TestSnapshotVersion(t *testing.T) {
	m := New()
	mustApply(t, m, Command{Op: OpUserPut, User: &User{Name: "u", Hash: []byte("h")}})
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var head struct {
		V     int             `json:"v"`
		Users map[string]User `json:"users"`
	}
	if err := json.Unmarshal(snap, &head); err != nil || head.V != Version || len(head.Users) != 1 {
		t.Fatalf("snapshot %s: version %d, users %v", snap, head.V, head.Users)
	}
	newer := bytes.Replace(snap, fmt.Appendf(nil, `{"v":%d,`, Version), fmt.Appendf(nil, `{"v":%d,`, Version+1), 1)
	if bytes.Equal(newer, snap) {
		t.Fatalf("snapshot does not start with its version: %s", snap)
	}
	other := New()
	if err := other.Restore(newer); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), fmt.Sprintf("written by version %d, newer than this binary understands (%d)", Version+1, Version)) {
		t.Fatalf("restore of a snapshot of version %d: %v", Version+1, err)
	}
	if len(other.State().Users) != 0 {
		t.Fatal("refused snapshot changed the state")
	}
	old := []byte(`{"lease":{"holder":"a","session":"s","epoch":4,"duration":2000000000,"released":false,"acquiredAt":"2026-11-23T09:00:00Z","renewedAt":"2026-11-23T09:00:00Z"},"nodes":{},"nextNodeSeq":0,"users":{"u":{"name":"u","hash":"aA=="}},"tokens":{},"initialized":true,"servers":{},"accounts":{},"partners":{},"remoteAccounts":{},"rules":{},"transfers":{},"nextTransferId":0}`)
	if err := other.Restore(old); err != nil {
		t.Fatalf("restore of a snapshot without a version: %v", err)
	}
	if s := other.State(); s.Lease.Epoch != 4 || len(s.Users) != 1 {
		t.Fatalf("restored %+v", s)
	}
}

// TestSnapshotSaysEntryVersion: a snapshot carries the highest version among
// the entries applied, not the binary's, so that an older voter of a
// cluster in a rolling upgrade (whose leader writes at the voters' lowest
// version) can install it; restored, the machine keeps that version.
func TestSnapshotSaysEntryVersion(t *testing.T) {
	m := New()
	mustApply(t, m, Command{Op: OpUserPut, V: 1, User: &User{Name: "u", Hash: []byte("h")}})
	version := func(m *Machine) int {
		t.Helper()
		snap, err := m.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		var head struct{ V int }
		if err := json.Unmarshal(snap, &head); err != nil {
			t.Fatal(err)
		}
		return head.V
	}
	if v := version(m); v != 1 {
		t.Fatalf("snapshot after version-1 entries says version %d", v)
	}
	mustApply(t, m, Command{Op: OpUserPut, V: 2, Put: PutUpdate, User: &User{Name: "u", Hash: []byte("h2")}})
	mustApply(t, m, Command{Op: OpNodeRemove, V: 1, Name: "gone"})
	if v := version(m); v != 2 {
		t.Fatalf("snapshot after a version-2 entry says version %d", v)
	}
	snap, _ := m.Snapshot()
	other := New()
	if err := other.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if v := version(other); v != 2 {
		t.Fatalf("restored machine's snapshot says version %d, want 2", v)
	}
}

func TestNeeds(t *testing.T) {
	for _, tc := range []struct {
		c    Command
		want int
	}{
		{Command{Op: OpUserPut, User: &User{Name: "u"}}, 1},
		{Command{Op: OpUserPut, Put: PutCreate, User: &User{Name: "u"}}, 2},
		{Command{Op: OpNodeRegister, Node: &Node{ID: "n", FSMVersion: 3}}, 1},
		{Command{Op: OpLeaseAcquire, Lease: &LeaseArgs{Holder: "n", Epoch: 1}}, 1},
		{Command{Op: OpLeaseAcquire, Lease: &LeaseArgs{Holder: "n", Epoch: 1, Grace: new(time.Duration)}}, 4},
	} {
		if got := Needs(tc.c); got != tc.want {
			t.Errorf("Needs(%s put=%q) = %d, want %d", tc.c.Op, tc.c.Put, got, tc.want)
		}
	}
	if KnownVersion(Node{}) != 2 || KnownVersion(Node{FSMVersion: 3}) != 3 {
		t.Error("KnownVersion: a node that never said applies 2; one that said 3, 3")
	}
}
