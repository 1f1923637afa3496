package cluster

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/udmg/gateway/fsm"
)

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

// TestSnapshotPersistsWhileApplying: Persist encodes the state frozen by
// Snapshot while the machine goes on applying (raft runs them on two
// goroutines): what it writes is the state at the freeze, byte for byte,
// and restores. Under -race this also shows that the applies write nothing
// the frozen copy reads: accounts, users, rules and transfers with their
// task runs are changed again while it is encoded.
func TestSnapshotPersistsWhileApplying(t *testing.T) {
	m := fsm.New()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	apply := func(c fsm.Command) {
		c.At = at
		b, err := fsm.Encode(c)
		if err != nil {
			t.Error(err)
			return
		}
		if r := m.Apply(b); r.Err != nil {
			t.Errorf("apply %s: %v", c.Op, r.Err)
		}
	}
	round := func(r int) {
		apply(fsm.Command{Op: fsm.OpUserPut, User: &fsm.User{Name: "u", Hash: []byte(fmt.Sprint("hash", r)), Perms: map[string]string{"users": "rw-"}}})
		apply(fsm.Command{Op: fsm.OpAccountPut, Account: &fsm.LocalAccount{Server: "sftp", Login: "bob", PasswordHash: []byte(fmt.Sprint("h", r)), PublicKeys: []string{fmt.Sprint("k", r)}}})
		apply(fsm.Command{Op: fsm.OpRulePut, Rule: &fsm.Rule{Name: "in", Path: fmt.Sprintf("in%d", r)}})
		for i := range 20 {
			id := uint64(r*20 + i + 1)
			apply(fsm.Command{Op: fsm.OpTransferAdd, Epoch: 1, Transfer: &fsm.Transfer{ID: id, IsServer: true, Agent: "sftp", Account: "bob",
				Status: fsm.StatusRunning, Step: fsm.StepData, NodeID: "a"}})
			for _, state := range []string{fsm.TaskRunning, fsm.TaskRunning, fsm.TaskDone} {
				apply(fsm.Command{Op: fsm.OpTransferTask, Epoch: 1, Task: &fsm.TaskChange{ID: id, Phase: fsm.PhasePost, Type: "COPY", State: state, NodeID: "a"}})
			}
		}
		// The last round's transfers run their task again (a rerun
		// changes the run in place, in a copy of the list): the frozen
		// copy holds the first of them.
		for i := range 20 {
			id := uint64(max(r-1, 0)*20 + i + 1)
			apply(fsm.Command{Op: fsm.OpTransferTask, Epoch: 1, Task: &fsm.TaskChange{ID: id, Phase: fsm.PhasePost, Type: "COPY", State: fsm.TaskRunning, NodeID: "a"}})
		}
	}
	apply(fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: "a", Session: "s", Epoch: 1, Duration: time.Hour}})
	apply(fsm.Command{Op: fsm.OpServerPut, Server: &fsm.Server{Name: "sftp", Protocol: fsm.ProtoSFTP, Port: 2222, Enabled: true}})
	for r := range 5 {
		round(r)
	}
	want, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := (&raftFSM{machine: m}).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	var wg sync.WaitGroup
	wg.Go(func() {
		for r := 5; r < 25; r++ {
			round(r)
		}
	})
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed %v, cancelled %v", sink.closed, sink.cancelled)
	}
	if !bytes.Equal(sink.Bytes(), want) {
		t.Fatal("the persisted snapshot is not the state at the freeze")
	}
	restored := fsm.New()
	if err := restored.Restore(sink.Bytes()); err != nil {
		t.Fatal(err)
	}
	if got, _ := restored.Snapshot(); !bytes.Equal(got, want) {
		t.Fatal("the persisted snapshot does not restore to the frozen state")
	}
	if now, _ := m.Snapshot(); bytes.Equal(now, want) {
		t.Fatal("the applies during Persist changed nothing: the test shows nothing")
	}
}
