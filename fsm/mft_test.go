package fsm

import (
	"errors"
	"testing"
	"time"
)

func change(id uint64, from []string, status string) *TransferChange {
	return &TransferChange{ID: id, From: from, Status: status}
}

// activeOn returns a machine whose lease is held by a at epoch 1, with a
// planned client transfer 1.
func activeOn(t *testing.T) *Machine {
	m := New()
	mustApply(t, m, lease(OpLeaseAcquire, "a", "s1", 1))
	mustApply(t, m, Command{Op: OpPartnerPut, Partner: &Partner{Name: "p", Protocol: ProtoSFTP, Address: "h:22"}})
	if r := mustApply(t, m, Command{Op: OpTransferAdd, At: t0, Transfer: &Transfer{ID: 1, Agent: "p", Status: StatusPlanned, MaxAttempts: 3}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	return m
}

func TestTransferLifecycle(t *testing.T) {
	progress := func(n int64) *int64 { return &n }
	cases := []struct {
		name    string
		cmds    []Command
		wantErr error
		status  string
	}{
		{"claimed under the lease", []Command{{Op: OpTransferUpdate, Epoch: 1, Change: change(1, []string{StatusPlanned}, StatusRunning)}}, nil, StatusRunning},
		{"claim by a deposed epoch refused", []Command{lease(OpLeaseAcquire, "b", "s2", 2), {Op: OpTransferUpdate, Epoch: 1, Change: change(1, []string{StatusPlanned}, StatusRunning)}}, ErrStaleEpoch, StatusPlanned},
		{"update without epoch is not decoded", []Command{{Op: OpTransferUpdate, Change: change(1, []string{StatusPlanned}, StatusRunning)}}, errDecode, StatusPlanned},
		{"compare and set", []Command{{Op: OpTransferUpdate, Epoch: 1, Change: change(1, []string{StatusRunning}, StatusDone)}}, ErrTransferState, StatusPlanned},
		{"pause running", []Command{{Op: OpTransferUpdate, Epoch: 1, Change: change(1, []string{StatusPlanned}, StatusRunning)}, {Op: OpTransferAction, Change: &TransferChange{ID: 1, Action: "pause"}}}, nil, StatusPaused},
		{"resume paused", []Command{{Op: OpTransferAction, Change: &TransferChange{ID: 1, Action: "pause"}}, {Op: OpTransferAction, Change: &TransferChange{ID: 1, Action: "resume"}}}, nil, StatusPlanned},
		{"resume planned refused", []Command{{Op: OpTransferAction, Change: &TransferChange{ID: 1, Action: "resume"}}}, ErrTransferState, StatusPlanned},
		{"retry only after error or cancel", []Command{{Op: OpTransferAction, Change: &TransferChange{ID: 1, Action: "retry"}}}, ErrTransferState, StatusPlanned},
		{"cancel then retry", []Command{{Op: OpTransferAction, Change: &TransferChange{ID: 1, Action: "cancel"}}, {Op: OpTransferAction, Change: &TransferChange{ID: 1, Action: "retry"}}}, nil, StatusPlanned},
		{"late checkpoint of a deposed run refused", []Command{
			{Op: OpTransferUpdate, Epoch: 1, Change: change(1, []string{StatusPlanned}, StatusRunning)},
			lease(OpLeaseAcquire, "b", "s2", 2),
			{Op: OpTransferUpdate, Epoch: 1, Change: &TransferChange{ID: 1, Progress: progress(99)}}}, ErrStaleEpoch, StatusRunning},
		{"takeover interrupts an older epoch's run", []Command{
			{Op: OpTransferUpdate, Epoch: 1, Change: change(1, []string{StatusPlanned}, StatusRunning)},
			lease(OpLeaseAcquire, "b", "s2", 2),
			{Op: OpTransferTakeover, Epoch: 2}}, nil, StatusInterrupted},
		{"checkpoint of a run the new epoch took over refused", []Command{
			{Op: OpTransferUpdate, Epoch: 1, Change: change(1, []string{StatusPlanned}, StatusRunning)},
			lease(OpLeaseAcquire, "b", "s2", 2),
			{Op: OpTransferTakeover, Epoch: 2},
			{Op: OpTransferUpdate, Epoch: 2, Change: &TransferChange{ID: 1, Progress: progress(5)}}}, ErrStaleEpoch, StatusInterrupted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := activeOn(t)
			var last Result
			for _, c := range tc.cmds {
				last = mustApply(t, m, c)
			}
			if tc.wantErr == errDecode {
				if last.Err == nil || last.Op != "" {
					t.Fatalf("err = %v, want a decode error", last.Err)
				}
			} else if !errors.Is(last.Err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", last.Err, tc.wantErr)
			}
			if got := m.State().Transfers[1]; got.Status != tc.status || got.Progress == 99 || got.Progress == 5 {
				t.Fatalf("transfer = %+v, want status %s and no refused progress", got, tc.status)
			}
		})
	}
}

var errDecode = errors.New("decode")

func TestObjectsAndWindow(t *testing.T) {
	m := activeOn(t)
	mustApply(t, m, Command{Op: OpServerPut, Server: &Server{Name: "s", Protocol: ProtoSFTP, Port: 2222}})
	if r := mustApply(t, m, Command{Op: OpServerPut, Server: &Server{Name: "s2", Protocol: ProtoFTP, Port: 2222}}); !errors.Is(r.Err, ErrInUse) {
		t.Fatalf("second server on port 2222: %v", r.Err)
	}
	if r := mustApply(t, m, Command{Op: OpAccountPut, Account: &LocalAccount{Server: "nope", Login: "x"}}); !errors.Is(r.Err, ErrUnknownObject) {
		t.Fatalf("account of unknown server: %v", r.Err)
	}
	mustApply(t, m, Command{Op: OpAccountPut, Account: &LocalAccount{Server: "s", Login: "x", PasswordHash: []byte("h")}})
	mustApply(t, m, Command{Op: OpServerDelete, Name: "s"})
	if len(m.State().Accounts) != 0 {
		t.Fatal("deleting a server left its accounts")
	}
	if r := mustApply(t, m, Command{Op: OpTransferAdd, Transfer: &Transfer{ID: 1}}); !errors.Is(r.Err, ErrExists) {
		t.Fatalf("duplicate transfer id: %v", r.Err)
	}
	// Seed once: an operator's deletion of a default server sticks.
	seed := Command{Op: OpSeed, Epoch: 1, Seed: &SeedArgs{Servers: []Server{{Name: "sftp", Protocol: ProtoSFTP, Port: 2222}}}}
	mustApply(t, m, seed)
	mustApply(t, m, Command{Op: OpServerDelete, Name: "sftp"})
	mustApply(t, m, seed)
	if _, ok := m.State().Servers["sftp"]; ok {
		t.Fatal("seed applied twice")
	}

	// The window: archived finished transfers beyond RecentWindow go.
	var ids []uint64
	for i := uint64(100); i < 100+RecentWindow+20; i++ {
		mustApply(t, m, Command{Op: OpTransferAdd, At: t0, Epoch: 1, Transfer: &Transfer{ID: i, IsServer: true, Status: StatusRunning}})
		mustApply(t, m, Command{Op: OpTransferUpdate, At: t0.Add(time.Second), Epoch: 1, Change: change(i, []string{StatusRunning}, StatusDone)})
		ids = append(ids, i)
	}
	if n := len(m.State().Transfers); n != 1+RecentWindow+20 {
		t.Fatalf("%d transfers before archiving", n)
	}
	mustApply(t, m, Command{Op: OpTransferArchive, Epoch: 1, Change: &TransferChange{IDs: ids}})
	st := m.State()
	if n := len(st.Transfers); n != 1+RecentWindow {
		t.Fatalf("%d transfers kept, want the live one and %d recent", n, RecentWindow)
	}
	if _, ok := st.Transfers[100]; ok {
		t.Fatal("oldest archived transfer kept")
	}
	if d := st.Transfers[ids[len(ids)-1]]; !d.Archived || !d.Stop.Equal(t0.Add(time.Second)) {
		t.Fatalf("newest: %+v", d)
	}
}
