package transfer

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/listeners"
)

// leaseNode is a Node whose lease a test flips (or grants for a number of
// checks); it commits nothing.
type leaseNode struct {
	valid atomic.Bool
	left  atomic.Int64 // > 0: valid for that many more checks, then not
	epoch uint64
	state fsm.State
}

func (n *leaseNode) ID() string                { return "node-under-test" }
func (n *leaseNode) State() fsm.State          { return n.state }
func (n *leaseNode) Read(f func(*fsm.State))   { f(&n.state) }
func (n *leaseNode) Apply(c fsm.Command) error { return nil }
func (n *leaseNode) LeaseRemaining() (uint64, time.Duration) {
	if n.LeaseValid() {
		return n.epoch, time.Second
	}
	return n.epoch, 0
}

func (n *leaseNode) LeaseValid() bool {
	if n.left.Load() > 0 {
		return n.left.Add(-1) >= 0
	}
	return n.valid.Load()
}

func testEngine(t *testing.T, n *leaseNode) (*Engine, *os.Root, string) {
	t.Helper()
	home := t.TempDir()
	cfg := Config{Node: n, GatewayHome: home, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cfg.defaults()
	e := &Engine{cfg: cfg, log: cfg.Logger, epoch: n.epoch}
	root, err := os.OpenRoot(home)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return e, root, home
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestPullRefusesStorageWithoutLease: the engine's pull path creates no
// directory or staging file, truncates nothing and puts nothing in place
// once the lease is gone, even when it was valid a moment before (after a
// partner dial, say); with the lease it continues an older epoch's staging
// file from the committed checkpoint, in a new file.
func TestPullRefusesStorageWithoutLease(t *testing.T) {
	n := &leaseNode{epoch: 5}
	e, root, home := testEngine(t, n)
	tr := fsm.Transfer{ID: 7, LocalPath: "in/sub/statement.csv", Progress: 600}

	// No lease: not even the directory.
	if _, _, err := e.openStaging(root, tr, 1000); !errors.Is(err, ErrNotActive) {
		t.Fatalf("openStaging without a lease: %v", err)
	}
	if exists(filepath.Join(home, "in")) {
		t.Fatal("the pull created a directory without the lease")
	}

	// An older epoch's staging file holds 1000 bytes, 600 committed.
	n.valid.Store(true)
	if err := os.MkdirAll(filepath.Join(home, "in", "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(home, "in", "sub", listeners.StagingName(7, 4))
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(old, data, 0o640); err != nil {
		t.Fatal(err)
	}
	// The lease ends after the mkdir and create checks: nothing copied or
	// truncated, the old staging file kept whole for the next ACTIVE node.
	n.valid.Store(false)
	n.left.Store(2)
	if _, _, err := e.openStaging(root, tr, 1000); !errors.Is(err, ErrNotActive) {
		t.Fatalf("openStaging with the lease ending: %v", err)
	}
	if b, _ := os.ReadFile(old); len(b) != 1000 {
		t.Fatalf("the older staging file changed without the lease: %d bytes", len(b))
	}
	cur := filepath.Join(home, "in", "sub", listeners.StagingName(7, 5))
	if b, _ := os.ReadFile(cur); len(b) != 0 {
		t.Fatalf("bytes written without the lease: %d", len(b))
	}

	// With the lease: the checkpoint is copied into this epoch's file.
	n.left.Store(0)
	n.valid.Store(true)
	f, off, err := e.openStaging(root, tr, 1000)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if off != 600 {
		t.Fatalf("pull continues at %d, want the checkpoint 600", off)
	}
	if b, _ := os.ReadFile(cur); len(b) != 600 || string(b) != string(data[:600]) {
		t.Fatalf("this epoch's staging file has %d bytes, want the 600 committed", len(b))
	}
	if exists(old) {
		t.Fatal("the older epoch's staging file is still there")
	}
	if exists(filepath.Join(home, tr.LocalPath)) {
		t.Fatal("the file is in place before its transfer is DONE")
	}

	// Putting it in place is fenced as well.
	n.valid.Store(false)
	if err := e.promote(root, tr.ID, tr.LocalPath, e.epoch); !errors.Is(err, ErrNotActive) {
		t.Fatalf("promote without a lease: %v", err)
	}
	if exists(filepath.Join(home, tr.LocalPath)) {
		t.Fatal("put in place without the lease")
	}
	n.valid.Store(true)
	if err := e.promote(root, tr.ID, tr.LocalPath, e.epoch); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(home, tr.LocalPath)); len(b) != 600 || exists(cur) {
		t.Fatalf("after promote: %d bytes in place, staging left: %v", len(b), exists(cur))
	}

	// A retry in the same epoch truncates its staging file back to the
	// checkpoint, but not once the lease is gone.
	retry := fsm.Transfer{ID: 8, LocalPath: "again.csv", Progress: 100}
	same := filepath.Join(home, listeners.StagingName(8, 5))
	if err := os.WriteFile(same, data[:900], 0o640); err != nil {
		t.Fatal(err)
	}
	n.valid.Store(false)
	n.left.Store(1) // the create check passes, the truncate check fails
	if _, _, err := e.openStaging(root, retry, 1000); !errors.Is(err, ErrNotActive) {
		t.Fatalf("openStaging with the lease ending before the truncate: %v", err)
	}
	if b, _ := os.ReadFile(same); len(b) != 900 {
		t.Fatalf("truncated without the lease: %d bytes", len(b))
	}
}

// TestTakeoverFinishesStaging: the new ACTIVE node puts a DONE upload whose
// staging file is still there in place, cuts a RUNNING one of an older
// epoch back to its checkpoint (kept for resume), and removes the staging
// files of ended, superseded and forgotten transfers; without the lease it
// changes nothing.
func TestTakeoverFinishesStaging(t *testing.T) {
	n := &leaseNode{epoch: 5}
	e, _, home := testEngine(t, n)
	dir := filepath.Join(home, "srv", "alice")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		return p
	}
	up := func(id uint64, status, file string, epoch uint64, progress int64) fsm.Transfer {
		return fsm.Transfer{ID: id, IsServer: true, Status: status, Epoch: epoch, Progress: progress, LocalPath: "srv/alice/" + file}
	}
	doneStaged := write(listeners.StagingName(1, 4), "complete")
	runningStaged := write(listeners.StagingName(2, 4), "abcdef")
	errorStaged := write(listeners.StagingName(3, 4), "failed pull")
	supersededStaged := write(listeners.StagingName(4, 3), "cut, then sent again whole")
	write("again.bin", "whole")
	interruptedStaged := write(listeners.StagingName(6, 4), "resumable")
	forgottenStaged := write(listeners.StagingName(99, 2), "archived long ago")
	n.state = fsm.State{Transfers: map[uint64]fsm.Transfer{
		1: up(1, fsm.StatusDone, "done.bin", 4, 8),
		2: up(2, fsm.StatusRunning, "running.bin", 4, 3),
		3: {ID: 3, Status: fsm.StatusError, Epoch: 4, LocalPath: "srv/alice/pulled.bin"},
		4: up(4, fsm.StatusInterrupted, "again.bin", 3, 10),
		5: up(5, fsm.StatusDone, "again.bin", 4, 5),
		6: up(6, fsm.StatusInterrupted, "resume.bin", 4, 9),
	}}

	if err := e.finishStaging(n.state); !errors.Is(err, ErrNotActive) {
		t.Fatalf("finishStaging without a lease: %v", err)
	}
	for _, p := range []string{doneStaged, runningStaged, errorStaged, supersededStaged, interruptedStaged, forgottenStaged} {
		if !exists(p) {
			t.Fatalf("%s changed without the lease", p)
		}
	}
	if exists(filepath.Join(dir, "done.bin")) {
		t.Fatal("put in place without the lease")
	}

	n.valid.Store(true)
	if err := e.finishStaging(n.state); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "done.bin")); string(b) != "complete" || exists(doneStaged) {
		t.Errorf("DONE upload: in place %q, staging left %v", b, exists(doneStaged))
	}
	if b, _ := os.ReadFile(runningStaged); string(b) != "abc" {
		t.Errorf("cut upload's staging file = %q, want its checkpoint %q", b, "abc")
	}
	if exists(filepath.Join(dir, "running.bin")) {
		t.Error("a cut upload was put in place")
	}
	if exists(errorStaged) || exists(supersededStaged) || exists(forgottenStaged) {
		t.Errorf("stale staging files left: error %v, superseded %v, forgotten %v",
			exists(errorStaged), exists(supersededStaged), exists(forgottenStaged))
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "again.bin")); string(b) != "whole" {
		t.Errorf("the newer upload was replaced: %q", b)
	}
	if b, _ := os.ReadFile(interruptedStaged); string(b) != "resumable" {
		t.Errorf("resumable staging file = %q", b)
	}
}

// TestTakeoverWithoutGatewayHome: a takeover whose state holds uploads but
// whose GatewayHome is not there (yet) finishes nothing and goes on: an
// error would have the node lose the lease and take it again, for ever.
func TestTakeoverWithoutGatewayHome(t *testing.T) {
	n := &leaseNode{epoch: 5}
	n.valid.Store(true)
	e, _, home := testEngine(t, n)
	e.cfg.GatewayHome = filepath.Join(home, "not-mounted")
	n.state = fsm.State{Transfers: map[uint64]fsm.Transfer{
		1: {ID: 1, IsServer: true, Status: fsm.StatusDone, Epoch: 4, LocalPath: "srv/alice/done.bin"},
	}}
	if err := e.finishStaging(n.state); err != nil {
		t.Fatalf("finishStaging without GatewayHome: %v", err)
	}
	if exists(e.cfg.GatewayHome) {
		t.Error("the takeover created GatewayHome")
	}
}
