package transfer

import (
	"slices"
	"testing"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/listeners"
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
