package transfer

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/listeners"
	"github.com/udmg/gateway/mirror"
)

// TestPendingCutUploads: a client's cut uploads of one file are those of
// its server and path, INTERRUPTED or RUNNING under an older epoch, newer
// than the file's last DONE upload, newest first; a chain in its
// post-tasks, a download, another server's upload and another file's are
// not.
func TestPendingCutUploads(t *testing.T) {
	n := &machineNode{m: fsm.New(), epoch: 2}
	n.must(t, fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: "node-a", Session: "a1", Epoch: 1, Duration: time.Minute}})
	const file = "home/bob/in/report.csv"
	for _, tr := range []fsm.Transfer{
		{ID: 1, Status: fsm.StatusInterrupted, Progress: 1},  // replaced by 2
		{ID: 2, Status: fsm.StatusDone},                      //
		{ID: 3, Status: fsm.StatusInterrupted, Progress: 30}, // pending
		{ID: 4, Status: fsm.StatusRunning, Progress: 40},     // cut: pending
		{ID: 5, Status: fsm.StatusRunning, Step: fsm.StepPostTasks},
		{ID: 6, Status: fsm.StatusInterrupted, Agent: "ftp"},
		{ID: 7, Status: fsm.StatusInterrupted, IsSend: true},
		{ID: 8, Status: fsm.StatusInterrupted, LocalPath: "home/bob/in/other.csv"},
	} {
		tr.IsServer, tr.Protocol, tr.Account, tr.Start = true, "sftp", "bob", time.Now()
		if tr.Agent == "" {
			tr.Agent = "sftp"
		}
		if tr.LocalPath == "" {
			tr.LocalPath = file
		}
		if tr.Step == "" {
			tr.Step = fsm.StepData
		}
		n.must(t, fsm.Command{Op: fsm.OpTransferAdd, Epoch: 1, Transfer: &tr})
	}
	// Node-b holds epoch 2 and has not taken over yet: 4 is still RUNNING.
	e := &Engine{cfg: Config{Node: n}, epoch: 2}
	rec := e.Recorder(fsm.Server{Name: "sftp", Root: "home"}).(*serverRecorder)
	got := rec.Pending(listeners.FileTransfer{Protocol: "sftp", Login: "bob", Path: "in/report.csv", Upload: true})
	if want := []listeners.Pending{{ID: 4, Checkpoint: 40}, {ID: 3, Checkpoint: 30}}; !slices.Equal(got, want) {
		t.Errorf("pending %+v, want %+v", got, want)
	}
	// Under epoch 1, 4 is its own run, not cut.
	e.epoch = 1
	got = rec.Pending(listeners.FileTransfer{Protocol: "sftp", Login: "bob", Path: "in/report.csv", Upload: true})
	if want := []listeners.Pending{{ID: 3, Checkpoint: 30}}; !slices.Equal(got, want) {
		t.Errorf("pending under epoch 1 %+v, want %+v", got, want)
	}
}

// proposingNode is a machineNode that can propose without waiting, as
// cluster.Node does, counting what it applies.
type proposingNode struct {
	*machineNode
	mu  sync.Mutex
	ops []fsm.Op
}

func (n *proposingNode) Apply(c fsm.Command) error {
	n.mu.Lock()
	n.ops = append(n.ops, c.Op)
	n.mu.Unlock()
	return n.machineNode.Apply(c)
}

func (n *proposingNode) Propose(c fsm.Command) func() error {
	err := n.Apply(c)
	return func() error { return err }
}

func (n *proposingNode) applied() []fsm.Op {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.ops)
}

// TestServerTransferStartDeferred: a server transfer that ends within
// startDelay of its open is recorded by one command, DONE (or cut) at
// once; one open longer shows RUNNING meanwhile (the engine's tick
// proposes its start) and ends with a change of it, its progress
// checkpoints as before.
func TestServerTransferStartDeferred(t *testing.T) {
	n := &proposingNode{machineNode: &machineNode{m: fsm.New(), epoch: 1}}
	n.must(t, fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: "node-b", Session: "b1", Epoch: 1, Duration: time.Minute}})
	n.valid.Store(true)
	e, err := Start(Config{Node: n, GatewayHome: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Poll: 10 * time.Millisecond, CheckpointInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	rec := e.Recorder(fsm.Server{Name: "sftp-b", Root: "home"})
	from := len(n.applied())
	adds := func() (add, update int) {
		for _, op := range n.applied()[from:] {
			switch op {
			case fsm.OpTransferAdd:
				add++
			case fsm.OpTransferUpdate:
				update++
			}
		}
		return add, update
	}

	// Short ones: the end alone, with what the start held.
	for i, cut := range []error{nil, errors.New("connection lost")} {
		r, err := rec.Begin(listeners.FileTransfer{Protocol: "sftp", Login: "bob", Path: fmt.Sprintf("/in/short%d.bin", i), Upload: true})
		if err != nil {
			t.Fatal(err)
		}
		id, _ := r.Staging()
		if _, ok := n.m.Transfer(id); ok {
			t.Fatalf("transfer %d in the state at its open", id)
		}
		r.Progress(4096)
		if err := r.End(4096, cut); err != nil {
			t.Fatal(err)
		}
		tr, ok := n.m.Transfer(id)
		want := fsm.StatusDone
		if cut != nil {
			want = fsm.StatusInterrupted
		}
		if !ok || tr.Status != want || tr.Progress != 4096 || tr.Filesize != 4096 || tr.Epoch != 1 || tr.Stop.IsZero() ||
			tr.Start.IsZero() || tr.LocalPath != fmt.Sprintf("home/bob/in/short%d.bin", i) || tr.Agent != "sftp-b" {
			t.Fatalf("short transfer %d: %+v (in state %v), want %s", id, tr, ok, want)
		}
	}
	if add, update := adds(); add != 2 || update != 0 {
		t.Fatalf("two short transfers: %d adds and %d updates, want 2 and 0", add, update)
	}

	// A long one: RUNNING once its start is proposed, its progress
	// checkpointed, then DONE by an update.
	from = len(n.applied())
	r, err := rec.Begin(listeners.FileTransfer{Protocol: "sftp", Login: "bob", Path: "/in/long.bin", Upload: true})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := r.Staging()
	r.Progress(100)
	tr := waitFor(t, n.machineNode, id, func(tr fsm.Transfer) bool { return tr.Status == fsm.StatusRunning && tr.Progress == 100 })
	if tr.Epoch != 1 || tr.Step != fsm.StepData {
		t.Fatalf("long transfer while open: %+v", tr)
	}
	if err := r.End(200, nil); err != nil {
		t.Fatal(err)
	}
	if tr, _ := n.m.Transfer(id); tr.Status != fsm.StatusDone || tr.Filesize != 200 {
		t.Fatalf("long transfer at its end: %+v", tr)
	}
	if add, update := adds(); add != 1 || update < 2 {
		t.Fatalf("a long transfer: %d adds and %d updates, want 1 and its checkpoint and end", add, update)
	}
}

// TestUnsettledUploadKeptInState: a complete upload whose rename the
// session has not yet put on disk (no Placed) stays in the state,
// unarchived, while later ones are archived; once placed, it is archived
// too.
func TestUnsettledUploadKeptInState(t *testing.T) {
	n := &proposingNode{machineNode: &machineNode{m: fsm.New(), epoch: 1}}
	n.must(t, fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: "node-b", Session: "b1", Epoch: 1, Duration: time.Minute}})
	n.valid.Store(true)
	h := &histories{rows: map[string]mirror.HistoryEntry{}}
	e, err := Start(Config{Node: n, GatewayHome: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		History: h, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	rec := e.Recorder(fsm.Server{Name: "sftp-b", Root: "home"})
	upload := func(name string) listeners.Record {
		r, err := rec.Begin(listeners.FileTransfer{Protocol: "sftp", Login: "bob", Path: name, Upload: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.End(4, nil); err != nil {
			t.Fatal(err)
		}
		return r
	}
	archived := func(r listeners.Record) bool {
		id, _ := r.Staging()
		tr, ok := n.m.Transfer(id)
		return ok && tr.Archived
	}
	unsettled, placed := upload("/in/a.bin"), upload("/in/b.bin")
	placed.(listeners.Placer).Placed(nil)
	waitFor(t, n.machineNode, idOf(placed.Staging()), func(tr fsm.Transfer) bool { return tr.Archived })
	if archived(unsettled) {
		t.Fatal("an upload archived before its rename was on disk")
	}
	if tr, _ := n.m.Transfer(idOf(unsettled.Staging())); tr.Status != fsm.StatusDone {
		t.Fatalf("unsettled upload: %+v", tr)
	}
	unsettled.(listeners.Placer).Placed(nil)
	waitFor(t, n.machineNode, idOf(unsettled.Staging()), func(tr fsm.Transfer) bool { return tr.Archived })
}

// idOf is the transfer ID of a Record's Staging.
func idOf(id, _ uint64) uint64 { return id }
