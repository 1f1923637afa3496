package transfer

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/listeners"
	"github.com/udmg/gateway/mirror"
	"github.com/udmg/gateway/tasks"
)

// machineNode is a Node over a real state machine: commands go through
// Encode and Apply as on a cluster's leader, so epochs are checked.
type machineNode struct {
	m     *fsm.Machine
	epoch uint64
	valid atomic.Bool
}

func (n *machineNode) ID() string                { return "node-b" }
func (n *machineNode) State() fsm.State          { return n.m.State() }
func (n *machineNode) Read(f func(s *fsm.State)) { n.m.Read(f) }
func (n *machineNode) LeaseValid() bool          { return n.valid.Load() }
func (n *machineNode) LeaseRemaining() (uint64, time.Duration) {
	if n.LeaseValid() {
		return n.epoch, time.Minute
	}
	return n.epoch, 0
}

func (n *machineNode) Apply(c fsm.Command) error {
	if c.At.IsZero() {
		c.At = time.Now()
	}
	b, err := fsm.Encode(c)
	if err != nil {
		return err
	}
	return n.m.Apply(b).Err
}

func (n *machineNode) must(t *testing.T, c fsm.Command) {
	t.Helper()
	if err := n.Apply(c); err != nil {
		t.Fatalf("%s: %v", c.Op, err)
	}
}

// histories keeps the rows the engine archives.
type histories struct {
	mu   sync.Mutex
	rows map[string]mirror.HistoryEntry
}

func (h *histories) AddHistory(_ context.Context, es ...mirror.HistoryEntry) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range es {
		h.rows[e.ID] = e
	}
	return nil
}

func (h *histories) row(id string) (mirror.HistoryEntry, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.rows[id]
	return e, ok
}

// chainSetup is a machine whose lease node-a held at epoch 1, with a
// receive rule "in" carrying post and error tasks and a partner's upload
// (transfer 1) of in/report.csv in place, RUNNING in POST TASKS under
// epoch 1; then node-b acquires epoch 2. It returns node-b and GatewayHome.
func chainSetup(t *testing.T, post, errs []tasks.Task, content string) (*machineNode, string) {
	t.Helper()
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "in"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "in", "report.csv"), []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	n := &machineNode{m: fsm.New(), epoch: 2}
	n.must(t, fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: "node-a", Session: "a1", Epoch: 1, Duration: time.Minute}})
	n.must(t, fsm.Command{Op: fsm.OpRulePut, Rule: &fsm.Rule{Name: "in", Path: "/in", PostTasks: post, ErrorTasks: errs}})
	n.must(t, fsm.Command{Op: fsm.OpTransferAdd, Epoch: 1, Transfer: &fsm.Transfer{ID: 1, IsServer: true, Protocol: "sftp", Rule: "in",
		Agent: "sftp-a", Account: "bob", LocalPath: "in/report.csv", RemotePath: "/in/report.csv", Filesize: int64(len(content)),
		Progress: int64(len(content)), Status: fsm.StatusRunning, Step: fsm.StepPostTasks, Start: time.Now(), NodeID: "node-a"}})
	return n, home
}

func startChainEngine(t *testing.T, n *machineNode, home string, h History) (*Engine, *TaskCounts) {
	t.Helper()
	n.must(t, fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: "node-b", Session: "b1", Epoch: 2, Duration: time.Minute}})
	n.valid.Store(true)
	counts := &TaskCounts{}
	e, err := Start(Config{Node: n, GatewayHome: home, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), History: h,
		Tasks: counts, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return e, counts
}

func waitFor(t *testing.T, n *machineNode, id uint64, ok func(fsm.Transfer) bool) fsm.Transfer {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		tr, _ := n.m.Transfer(id)
		if ok(tr) {
			return tr
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfer %d: %s %s, tasks %+v", id, tr.Status, tr.Step, tr.Tasks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestChainResumedAfterFailover: node-a died in the middle of a partner
// upload's post-tasks, the CHECKSUM's end committed, the COPY's start
// only. Node-b's engine takes the chain over RUNNING, does not run the
// CHECKSUM again, runs the COPY again (a second run), then the MOVE, on
// the real files; the transfer ends DONE and its history row keeps the
// five-task chain with times and nodes.
func TestChainResumedAfterFailover(t *testing.T) {
	post := []tasks.Task{
		{Type: "CHECKSUM"},
		{Type: "COPY", Args: map[string]any{"path": "archive"}},
		{Type: "MOVE", Args: map[string]any{"path": "done"}},
	}
	n, home := chainSetup(t, post, nil, "a,b,c\n1,2,3\n")
	n.must(t, fsm.Command{Op: fsm.OpTransferTask, Epoch: 1, Task: &fsm.TaskChange{ID: 1, Phase: fsm.PhasePost, Index: 0, Type: "CHECKSUM", State: fsm.TaskRunning, NodeID: "node-a"}})
	// Its sidecar is a stand-in: a rerun would overwrite it.
	if err := os.WriteFile(filepath.Join(home, "in", "report.csv.sha256"), []byte("left by node-a\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	n.must(t, fsm.Command{Op: fsm.OpTransferTask, Epoch: 1, Task: &fsm.TaskChange{ID: 1, Phase: fsm.PhasePost, Index: 0, State: fsm.TaskDone}})
	n.must(t, fsm.Command{Op: fsm.OpTransferTask, Epoch: 1, Task: &fsm.TaskChange{ID: 1, Phase: fsm.PhasePost, Index: 1, Type: "COPY", State: fsm.TaskRunning, NodeID: "node-a"}})
	// node-a's COPY left a partial file behind.
	if err := os.MkdirAll(filepath.Join(home, "archive"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "archive", "report.csv"), []byte("a,b"), 0o640); err != nil {
		t.Fatal(err)
	}

	h := &histories{rows: map[string]mirror.HistoryEntry{}}
	_, counts := startChainEngine(t, n, home, h)
	tr := waitFor(t, n, 1, func(tr fsm.Transfer) bool { return tr.Status == fsm.StatusDone && tr.Archived })

	if len(tr.Tasks) != 3 {
		t.Fatalf("tasks %+v", tr.Tasks)
	}
	for i, want := range []struct {
		node string
		runs int
	}{{"node-a", 1}, {"node-b", 2}, {"node-b", 1}} {
		r := tr.Tasks[i]
		if r.State != fsm.TaskDone || r.NodeID != want.node || r.Runs != want.runs || r.Stop.Before(r.Start) {
			t.Errorf("task %d: %+v, want DONE on %s after %d run(s)", i+1, r, want.node, want.runs)
		}
	}
	if side, _ := os.ReadFile(filepath.Join(home, "in", "report.csv.sha256")); string(side) != "left by node-a\n" {
		t.Errorf("the DONE CHECKSUM ran again: sidecar %q", side)
	}
	if b, err := os.ReadFile(filepath.Join(home, "archive", "report.csv")); err != nil || string(b) != "a,b,c\n1,2,3\n" {
		t.Errorf("archived copy %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(home, "done", "report.csv")); err != nil || string(b) != "a,b,c\n1,2,3\n" || exists(filepath.Join(home, "in", "report.csv")) {
		t.Errorf("moved file %q, %v (original still there: %v)", b, err, exists(filepath.Join(home, "in", "report.csv")))
	}
	if tr.ChainPath() != filepath.Join("done", "report.csv") {
		t.Errorf("chain path %q", tr.ChainPath())
	}
	row, ok := h.row("1")
	if !ok {
		t.Fatal("no history row")
	}
	var kept []fsm.TaskRun
	if err := json.Unmarshal([]byte(row.Tasks), &kept); err != nil || len(kept) != 3 || kept[1].Runs != 2 || kept[2].Type != "MOVE" {
		t.Fatalf("history tasks %s (%v)", row.Tasks, err)
	}
	if c := counts.Counts(); c[[2]string{"COPY", fsm.TaskDone}] != 1 || c[[2]string{"MOVE", fsm.TaskDone}] != 1 || c[[2]string{"CHECKSUM", fsm.TaskDone}] != 0 {
		t.Errorf("task counts %v", c)
	}
}

// TestChainErrorTasks: a CHECKSUM that refuses the file fails the chain;
// the error-tasks move it to quarantine and the transfer ends ERROR with
// the refusal, naming the rule, the list, the task and the problem.
func TestChainErrorTasks(t *testing.T) {
	post := []tasks.Task{
		{Type: "CHECKSUM", Args: map[string]any{"expect": strings.Repeat("0", 64)}},
		{Type: "MOVE", Args: map[string]any{"path": "done"}},
	}
	errs := []tasks.Task{{Type: "MOVE", Args: map[string]any{"path": "quarantine"}}}
	n, home := chainSetup(t, post, errs, "tampered")
	_, counts := startChainEngine(t, n, home, nil)
	tr := waitFor(t, n, 1, func(tr fsm.Transfer) bool { return tr.Status == fsm.StatusError })

	if tr.ErrorCode != fsm.TeExternalOperation || !strings.Contains(tr.ErrorDetails, "rule in: post task 1 (CHECKSUM)") {
		t.Errorf("error %s %q", tr.ErrorCode, tr.ErrorDetails)
	}
	if len(tr.Tasks) != 2 || tr.Tasks[0].State != fsm.TaskError || tr.Tasks[0].Error == "" || tr.Tasks[1].Phase != fsm.PhaseError || tr.Tasks[1].State != fsm.TaskDone {
		t.Fatalf("tasks %+v", tr.Tasks)
	}
	if b, err := os.ReadFile(filepath.Join(home, "quarantine", "report.csv")); err != nil || string(b) != "tampered" {
		t.Errorf("quarantined file %q, %v", b, err)
	}
	if exists(filepath.Join(home, "done", "report.csv")) {
		t.Error("the post-task after the failed one ran")
	}
	if c := counts.Counts(); c[[2]string{"CHECKSUM", fsm.TaskError}] != 1 {
		t.Errorf("task counts %v", c)
	}
}

// TestServerUploadRefusedByPreTask: a CHECK pre-task refuses a partner's
// upload by its name at open (the client's open fails with the reason)
// and, by its size, at its end; each refused upload ends ERROR.
func TestServerUploadRefusedByPreTask(t *testing.T) {
	home := t.TempDir()
	n := &machineNode{m: fsm.New(), epoch: 1}
	n.must(t, fsm.Command{Op: fsm.OpRulePut, Rule: &fsm.Rule{Name: "csv", Path: "/in",
		PreTasks: []tasks.Task{{Type: "CHECK", Args: map[string]any{"namePattern": "*.csv", "maxSize": 10}}}}})
	n.must(t, fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: "node-b", Session: "b1", Epoch: 1, Duration: time.Minute}})
	n.valid.Store(true)
	e, err := Start(Config{Node: n, GatewayHome: home, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	rec := e.Recorder(fsm.Server{Name: "sftp-b"})

	_, err = rec.Begin(listeners.FileTransfer{Protocol: "sftp", Login: "bob", Path: "/in/report.exe", Upload: true})
	if !errors.Is(err, tasks.ErrRefused) || !strings.Contains(err.Error(), `refused by rule csv: rule csv: pre task 1 (CHECK)`) || !strings.Contains(err.Error(), `"report.exe"`) {
		t.Fatalf("open of report.exe: %v", err)
	}
	r, err := rec.Begin(listeners.FileTransfer{Protocol: "sftp", Login: "bob", Path: "/in/big.csv", Upload: true})
	if err != nil {
		t.Fatalf("open of big.csv: %v", err)
	}
	if err := r.End(11, nil); !errors.Is(err, tasks.ErrRefused) || !strings.Contains(err.Error(), "maxSize") {
		t.Fatalf("end of an 11-byte big.csv: %v", err)
	}
	st := n.State()
	if len(st.Transfers) != 2 {
		t.Fatalf("transfers %v", st.Transfers)
	}
	for id, tr := range st.Transfers {
		if tr.Status != fsm.StatusError || tr.ErrorCode != fsm.TeExternalOperation || len(tr.Tasks) != 1 || tr.Tasks[0].State != fsm.TaskError {
			t.Errorf("transfer %d: %s %s %q, tasks %+v", id, tr.Status, tr.ErrorCode, tr.ErrorDetails, tr.Tasks)
		}
	}
}

// TestRefusedUploadErrorTasksAcrossFailover: a partner's upload refused by
// a CHECK pre-task runs the rule's error-tasks, exactly once across a
// failover. Node-a refused in/report.csv at its end (too big), committed
// the error MOVE's start and died before the rename; node-b takes the
// chain over, moves the staged file to quarantine under the partner's
// name (not the older in/report.csv, which is another transfer's), and the
// WEBHOOK fires once. Then node-b refuses report.exe at its open: there is
// no file, the MOVE is skipped (recorded), the WEBHOOK fires, and the
// older bob/in/report.exe stays.
func TestRefusedUploadErrorTasksAcrossFailover(t *testing.T) {
	var hooks []map[string]any
	var hookMu sync.Mutex
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		hookMu.Lock()
		hooks = append(hooks, body)
		hookMu.Unlock()
	}))
	t.Cleanup(hook.Close)
	calls := func() []map[string]any {
		hookMu.Lock()
		defer hookMu.Unlock()
		return slices.Clone(hooks)
	}
	pre := []tasks.Task{{Type: "CHECK", Args: map[string]any{"namePattern": "*.csv", "maxSize": 5}}}
	errs := []tasks.Task{
		{Type: "MOVE", Args: map[string]any{"path": "quarantine"}},
		{Type: "WEBHOOK", Args: map[string]any{"url": hook.URL, "attempts": 1}},
	}
	home := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(home, rel)), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, rel), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	staged := filepath.Join("in", listeners.StagingName(1, 1))
	write(staged, "refused content")
	write("in/report.csv", "older")
	write("bob/in/report.exe", "older exe") // where sftp-b (root "") keeps bob's files
	n := &machineNode{m: fsm.New(), epoch: 2}
	n.must(t, fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: "node-a", Session: "a1", Epoch: 1, Duration: time.Minute}})
	n.must(t, fsm.Command{Op: fsm.OpRulePut, Rule: &fsm.Rule{Name: "in", Path: "/in", PreTasks: pre, ErrorTasks: errs}})
	size := int64(len("refused content"))
	n.must(t, fsm.Command{Op: fsm.OpTransferAdd, Epoch: 1, Transfer: &fsm.Transfer{ID: 1, IsServer: true, Protocol: "sftp", Rule: "in",
		Agent: "sftp-a", Account: "bob", LocalPath: "in/report.csv", RemotePath: "/in/report.csv", Filesize: size, Progress: size,
		Status: fsm.StatusRunning, Step: fsm.StepError, ErrorCode: fsm.TeExternalOperation, ErrorDetails: "rule in: pre task 1 (CHECK): too big",
		Start: time.Now(), NodeID: "node-a"}})
	for _, tc := range []fsm.TaskChange{
		{ID: 1, Phase: fsm.PhasePre, Index: 0, Type: "CHECK", State: fsm.TaskRunning, NodeID: "node-a"},
		{ID: 1, Phase: fsm.PhasePre, Index: 0, Type: "CHECK", State: fsm.TaskError, Error: "too big", NodeID: "node-a"},
		{ID: 1, Phase: fsm.PhaseError, Index: 0, Type: "MOVE", State: fsm.TaskRunning, NodeID: "node-a"},
	} {
		n.must(t, fsm.Command{Op: fsm.OpTransferTask, Epoch: 1, Task: &tc})
	}

	e, _ := startChainEngine(t, n, home, nil)
	tr := waitFor(t, n, 1, func(tr fsm.Transfer) bool { return tr.Status == fsm.StatusError })
	if len(tr.Tasks) != 3 || tr.Tasks[1].Type != "MOVE" || tr.Tasks[1].State != fsm.TaskDone || tr.Tasks[1].Runs != 2 || tr.Tasks[1].NodeID != "node-b" ||
		tr.Tasks[2].Type != "WEBHOOK" || tr.Tasks[2].State != fsm.TaskDone || tr.Tasks[2].Runs != 1 {
		t.Fatalf("tasks %+v", tr.Tasks)
	}
	if tr.ErrorCode != fsm.TeExternalOperation || !strings.Contains(tr.ErrorDetails, "pre task 1 (CHECK)") {
		t.Errorf("error %s %q", tr.ErrorCode, tr.ErrorDetails)
	}
	if b, err := os.ReadFile(filepath.Join(home, "quarantine", "report.csv")); err != nil || string(b) != "refused content" || exists(filepath.Join(home, staged)) {
		t.Errorf("quarantined %q, %v; staged file left: %v", b, err, exists(filepath.Join(home, staged)))
	}
	if b, _ := os.ReadFile(filepath.Join(home, "in", "report.csv")); string(b) != "older" {
		t.Errorf("the older in/report.csv became %q", b)
	}
	if c := calls(); len(c) != 1 || c[0]["transferId"] != float64(1) {
		t.Fatalf("webhook calls %v", c)
	}

	rec := e.Recorder(fsm.Server{Name: "sftp-b"})
	if _, err := rec.Begin(listeners.FileTransfer{Protocol: "sftp", Login: "bob", Path: "/in/report.exe", Upload: true}); !errors.Is(err, tasks.ErrRefused) {
		t.Fatalf("open of report.exe: %v", err)
	}
	var id uint64
	n.Read(func(s *fsm.State) {
		for i, x := range s.Transfers {
			if x.RemotePath == "/in/report.exe" {
				id = i
			}
		}
	})
	tr = waitFor(t, n, id, func(tr fsm.Transfer) bool { return tr.Status == fsm.StatusError })
	if len(tr.Tasks) != 3 || tr.Tasks[1].State != fsm.TaskDone || !strings.Contains(tr.Tasks[1].Output, "skipped") || tr.Tasks[2].State != fsm.TaskDone {
		t.Fatalf("tasks of the refused open %+v", tr.Tasks)
	}
	if b, _ := os.ReadFile(filepath.Join(home, "bob", "in", "report.exe")); string(b) != "older exe" || exists(filepath.Join(home, "quarantine", "report.exe")) {
		t.Errorf("the older bob/in/report.exe became %q (quarantined: %v)", b, exists(filepath.Join(home, "quarantine", "report.exe")))
	}
	if c := calls(); len(c) != 2 || c[1]["transferId"] != float64(id) {
		t.Errorf("webhook calls %v", c)
	}
}
