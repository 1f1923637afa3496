package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func lease(op Op, holder, session string, epoch uint64) Command {
	return Command{Op: op, At: t0, Lease: &LeaseArgs{Holder: holder, Session: session, Epoch: epoch, Duration: 2 * time.Second}}
}

func mustApply(t testing.TB, m *Machine, c Command) Result {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	return m.Apply(b)
}

func TestLeaseRules(t *testing.T) {
	// Each case starts from: node a holds epoch 1 (session s1).
	cases := []struct {
		name    string
		cmds    []Command
		wantErr error
		want    Lease // checked on Holder, Epoch, Released
	}{
		{"renew by holder", []Command{lease(OpLeaseRenew, "a", "s1", 1)}, nil, Lease{Holder: "a", Epoch: 1}},
		{"renew with old epoch refused", []Command{lease(OpLeaseAcquire, "b", "s2", 2), lease(OpLeaseRenew, "a", "s1", 1)}, ErrStaleEpoch, Lease{Holder: "b", Epoch: 2}},
		{"renew by other node refused", []Command{lease(OpLeaseRenew, "b", "s2", 1)}, ErrNotHolder, Lease{Holder: "a", Epoch: 1}},
		{"renew by previous run of holder refused", []Command{lease(OpLeaseRenew, "a", "s0", 1)}, ErrNotHolder, Lease{Holder: "a", Epoch: 1}},
		{"acquire must be next epoch", []Command{lease(OpLeaseAcquire, "b", "s2", 1)}, ErrStaleEpoch, Lease{Holder: "a", Epoch: 1}},
		{"acquire skipping an epoch refused", []Command{lease(OpLeaseAcquire, "b", "s2", 3)}, ErrStaleEpoch, Lease{Holder: "a", Epoch: 1}},
		{"acquire next epoch takes over", []Command{lease(OpLeaseAcquire, "b", "s2", 2)}, nil, Lease{Holder: "b", Epoch: 2}},
		{"release by holder", []Command{lease(OpLeaseRelease, "a", "s1", 1)}, nil, Lease{Holder: "a", Epoch: 1, Released: true}},
		{"renew after release refused", []Command{lease(OpLeaseRelease, "a", "s1", 1), lease(OpLeaseRenew, "a", "s1", 1)}, ErrReleased, Lease{Holder: "a", Epoch: 1, Released: true}},
		{"release by other refused", []Command{lease(OpLeaseRelease, "b", "s2", 1)}, ErrNotHolder, Lease{Holder: "a", Epoch: 1}},
		{"release of old epoch refused", []Command{lease(OpLeaseAcquire, "b", "s2", 2), lease(OpLeaseRelease, "a", "s1", 1)}, ErrStaleEpoch, Lease{Holder: "b", Epoch: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			if r := mustApply(t, m, lease(OpLeaseAcquire, "a", "s1", 1)); r.Err != nil {
				t.Fatalf("first acquire: %v", r.Err)
			}
			var last Result
			for _, c := range tc.cmds {
				last = mustApply(t, m, c)
			}
			if !errors.Is(last.Err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", last.Err, tc.wantErr)
			}
			got := m.Lease()
			if got.Holder != tc.want.Holder || got.Epoch != tc.want.Epoch || got.Released != tc.want.Released {
				t.Fatalf("lease = %+v, want holder %s epoch %d released %v", got, tc.want.Holder, tc.want.Epoch, tc.want.Released)
			}
			if last.Lease != got {
				t.Fatalf("result lease %+v differs from state %+v", last.Lease, got)
			}
		})
	}
}

func TestEpochFencing(t *testing.T) {
	m := New()
	mustApply(t, m, Command{Op: OpNodeRegister, At: t0, Node: &Node{ID: "a"}})
	mustApply(t, m, lease(OpLeaseAcquire, "a", "s1", 1))
	mustApply(t, m, lease(OpLeaseAcquire, "b", "s2", 2))

	status := func(epoch uint64) Command {
		return Command{Op: OpNodeStatus, At: t0.Add(time.Second), Epoch: epoch, Status: &StatusArgs{ID: "a", Status: "ACTIVE"}}
	}
	if r := mustApply(t, m, status(1)); !errors.Is(r.Err, ErrStaleEpoch) {
		t.Fatalf("change under deposed epoch: err = %v, want stale epoch", r.Err)
	}
	if got := m.State().Nodes["a"].Status; got != "" {
		t.Fatalf("refused change was applied: status %q", got)
	}
	if r := mustApply(t, m, status(2)); r.Err != nil {
		t.Fatalf("change under current epoch: %v", r.Err)
	}
	mustApply(t, m, lease(OpLeaseRelease, "b", "s2", 2))
	if r := mustApply(t, m, status(2)); !errors.Is(r.Err, ErrStaleEpoch) {
		t.Fatalf("change under released epoch: err = %v, want stale epoch", r.Err)
	}
}

func TestNodeRegistry(t *testing.T) {
	m := New()
	reg := func(id, addr string, at time.Time) {
		mustApply(t, m, Command{Op: OpNodeRegister, At: at, Node: &Node{ID: id, RaftAddr: addr}})
	}
	reg("n2", "127.0.0.2:8300", t0)
	reg("n1", "127.0.0.1:8300", t0.Add(time.Second))
	reg("n2", "127.0.0.9:8300", t0.Add(2*time.Second)) // re-registration keeps order

	s := m.State()
	if s.Nodes["n2"].Seq != 1 || s.Nodes["n1"].Seq != 2 {
		t.Fatalf("registration order: n2=%d n1=%d, want 1 and 2", s.Nodes["n2"].Seq, s.Nodes["n1"].Seq)
	}
	if s.Nodes["n2"].RaftAddr != "127.0.0.9:8300" || !s.Nodes["n2"].Registered.Equal(t0) {
		t.Fatalf("re-registration: %+v", s.Nodes["n2"])
	}
	at := t0.Add(3 * time.Second)
	if r := mustApply(t, m, Command{Op: OpNodeStatus, At: at, Status: &StatusArgs{ID: "n1", Status: "ACTIVE"}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if n := m.State().Nodes["n1"]; n.Status != "ACTIVE" || !n.LastActive.Equal(at) || !n.LastUpdate.Equal(at) {
		t.Fatalf("status: %+v", n)
	}
	if r := mustApply(t, m, Command{Op: OpNodeStatus, At: at, Status: &StatusArgs{ID: "zz", Status: "ACTIVE"}}); !errors.Is(r.Err, ErrUnknownNode) {
		t.Fatalf("status of unknown node: %v", r.Err)
	}
	mustApply(t, m, Command{Op: OpNodeRemove, Name: "n2"})
	if _, ok := m.State().Nodes["n2"]; ok {
		t.Fatal("n2 not removed")
	}
}

func TestInitOnce(t *testing.T) {
	m := New()
	init := Command{Op: OpInit, At: t0, Init: &InitArgs{Admin: User{Name: "admin", Hash: []byte("h1")}, HostKey: []byte("key1")}}
	if r := mustApply(t, m, init); r.Err != nil {
		t.Fatal(r.Err)
	}
	init.Init = &InitArgs{Admin: User{Name: "admin", Hash: []byte("h2")}, HostKey: []byte("key2")}
	if r := mustApply(t, m, init); !errors.Is(r.Err, ErrInitialized) {
		t.Fatalf("second init: %v", r.Err)
	}
	s := m.State()
	if string(s.HostKey) != "key1" || string(s.Users["admin"].Hash) != "h1" {
		t.Fatalf("second init changed state: %+v", s)
	}
}

func TestDecodeRejectsBadEntries(t *testing.T) {
	for _, in := range []string{``, `{`, `[]`, `{"op":"nope"}`, `{"op":"lease.renew"}`, `{"op":"lease.renew","lease":{"holder":""}}`, `{"op":"node.register","node":{}}`, `{"op":"user.delete"}`} {
		m := New()
		before, _ := m.Snapshot()
		if r := m.Apply([]byte(in)); r.Err == nil {
			t.Errorf("Apply(%q) accepted", in)
		}
		after, _ := m.Snapshot()
		if !bytes.Equal(before, after) {
			t.Errorf("Apply(%q) changed state", in)
		}
	}
}

func TestSnapshotRestoreIsDeterministic(t *testing.T) {
	build := func() *Machine {
		m := New()
		for i, id := range []string{"c", "a", "b"} {
			mustApply(t, m, Command{Op: OpNodeRegister, At: t0.Add(time.Duration(i) * time.Second), Node: &Node{ID: id}})
		}
		mustApply(t, m, lease(OpLeaseAcquire, "a", "s1", 1))
		mustApply(t, m, Command{Op: OpUserPut, User: &User{Name: "u", Hash: []byte("x"), Perms: map[string]string{"transfers": "rw-"}}})
		return m
	}
	s1, err := build().Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := build().Snapshot()
	if !bytes.Equal(s1, s2) {
		t.Fatal("same log gave different snapshots")
	}
	m := New()
	if err := m.Restore(s1); err != nil {
		t.Fatal(err)
	}
	s3, _ := m.Snapshot()
	if !bytes.Equal(s1, s3) {
		t.Fatalf("restore round trip differs:\n%s\n%s", s1, s3)
	}
	// The restored machine keeps enforcing the lease.
	if r := mustApply(t, m, lease(OpLeaseRenew, "b", "s2", 1)); !errors.Is(r.Err, ErrNotHolder) {
		t.Fatalf("renew by non-holder after restore: %v", r.Err)
	}
	if err := m.Restore([]byte("{broken")); err == nil {
		t.Fatal("restore of a broken snapshot accepted")
	}
	s4, _ := m.Snapshot()
	if !bytes.Equal(s1, s4) {
		t.Fatal("failed restore changed the state")
	}
}

func FuzzApply(f *testing.F) {
	progress := int64(10)
	for _, c := range []Command{lease(OpLeaseAcquire, "a", "s", 1), {Op: OpNodeRegister, Node: &Node{ID: "n"}},
		{Op: OpServerPut, Server: &Server{Name: "sftp", Protocol: "sftp", Port: 2222}},
		{Op: OpPartnerPut, Partner: &Partner{Name: "p", Protocol: "sftp", Address: "h:22"}},
		{Op: OpRulePut, Rule: &Rule{Name: "r", Send: true, Path: "/out"}},
		{Op: OpTransferAdd, Epoch: 1, Transfer: &Transfer{ID: 1, Rule: "r", Status: StatusRunning}},
		{Op: OpTransferUpdate, Epoch: 1, Change: &TransferChange{ID: 1, Progress: &progress}},
		{Op: OpUserPut, Put: PutCreate, User: &User{Name: "u", Hash: []byte("h")}},
		{Op: OpRulePut, Put: PutUpdate, V: Version + 1, Rule: &Rule{Name: "r"}}} {
		b, _ := Encode(c)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := New()
		m.Apply(data)
		snap, err := m.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if err := New().Restore(snap); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSlotsAndOffline(t *testing.T) {
	m := New()
	for _, id := range []string{"a", "b", "c"} {
		mustApply(t, m, Command{Op: OpNodeRegister, At: t0, Node: &Node{ID: id}})
	}
	mustApply(t, m, Command{Op: OpSlots, Licensed: []string{"a", "c"}})
	s := m.State()
	if !s.Nodes["a"].Licensed || s.Nodes["b"].Licensed || !s.Nodes["c"].Licensed {
		t.Fatalf("slots: %+v", s.Nodes)
	}
	// Re-registration keeps the slot.
	mustApply(t, m, Command{Op: OpNodeRegister, At: t0, Node: &Node{ID: "a", RaftAddr: "x"}})
	if !m.State().Nodes["a"].Licensed {
		t.Fatal("re-registration dropped the slot")
	}

	off := func(at time.Time, status string) Node {
		mustApply(t, m, Command{Op: OpNodeStatus, At: at, Status: &StatusArgs{ID: "a", Status: status}})
		return m.State().Nodes["a"]
	}
	if n := off(t0.Add(time.Second), "OFFLINE"); !n.OfflineSince.Equal(t0.Add(time.Second)) {
		t.Fatalf("offline since %v", n.OfflineSince)
	}
	if n := off(t0.Add(2*time.Second), "OFFLINE"); !n.OfflineSince.Equal(t0.Add(time.Second)) {
		t.Fatalf("repeated OFFLINE moved OfflineSince to %v", n.OfflineSince)
	}
	if n := off(t0.Add(3*time.Second), "PASSIVE"); !n.OfflineSince.IsZero() {
		t.Fatalf("back up but OfflineSince %v", n.OfflineSince)
	}
}

func TestUsersAndTokens(t *testing.T) {
	m := New()
	mustApply(t, m, Command{Op: OpUserPut, User: &User{Name: "u", Hash: []byte("h")}})
	mustApply(t, m, Command{Op: OpTokenPut, Token: &Token{Hash: "t1", User: "u", Expires: t0}})
	mustApply(t, m, Command{Op: OpTokenPut, Token: &Token{Hash: "t2", User: "other", Expires: t0}})
	if r := mustApply(t, m, Command{Op: OpUserDelete, Name: "nobody"}); !errors.Is(r.Err, ErrUnknownUser) {
		t.Fatalf("delete unknown user: %v", r.Err)
	}
	mustApply(t, m, Command{Op: OpUserDelete, Name: "u"})
	s := m.State()
	if _, ok := s.Users["u"]; ok {
		t.Fatal("user not deleted")
	}
	if _, ok := s.Tokens["t1"]; ok {
		t.Fatal("deleted user's token survives")
	}
	if _, ok := s.Tokens["t2"]; !ok {
		t.Fatal("another user's token was deleted")
	}
	mustApply(t, m, Command{Op: OpTokenDelete, Name: "t2"})
	if len(m.State().Tokens) != 0 {
		t.Fatal("token not deleted")
	}
}
