package fsm

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/udmg/gateway/tasks"
)

// running returns activeOn's machine with transfer 1 RUNNING under epoch 1.
func running(t *testing.T) *Machine {
	m := activeOn(t)
	if r := mustApply(t, m, Command{Op: OpTransferUpdate, Epoch: 1, Change: &TransferChange{ID: 1, From: []string{StatusPlanned}, Status: StatusRunning, NodeID: "a"}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	return m
}

func task(phase string, index int, state string) Command {
	return Command{Op: OpTransferTask, Epoch: 1, At: t0, Task: &TaskChange{ID: 1, Phase: phase, Index: index, Type: "COPY", State: state, NodeID: "a"}}
}

func TestTaskProgress(t *testing.T) {
	m := running(t)
	end := task(PhasePost, 1, TaskError)
	end.Task.Error, end.Task.Output, end.Task.Path = "disk full", strings.Repeat("é", MaxTaskOutput), "out/x"
	// The node dies in task 1: its rerun counts a second run. Each
	// change leaves a state frozen before it as it was (copy on write).
	for _, c := range []Command{task(PhasePost, 0, TaskRunning), task(PhasePost, 0, TaskDone), task(PhasePost, 1, TaskRunning),
		task(PhasePost, 1, TaskRunning), end} {
		frozen, frozenAt := m.Freeze(), encodeNow(t, m)
		if r := mustApply(t, m, c); r.Err != nil {
			t.Fatalf("%+v: %v", c.Task, r.Err)
		}
		frozenStill(t, frozen, frozenAt, fmt.Sprintf("task %d %s", c.Task.Index, c.Task.State))
	}
	tr, _ := m.Transfer(1)
	if len(tr.Tasks) != 2 || tr.Tasks[0].State != TaskDone || tr.Tasks[1].State != TaskError || tr.Tasks[1].Runs != 2 {
		t.Fatalf("tasks %+v", tr.Tasks)
	}
	if o := tr.Tasks[1].Output; len(o) > MaxTaskOutput || !strings.HasPrefix(o, "é") || strings.ToValidUTF8(o, "?") != o {
		t.Fatalf("output not bounded on a character: %d bytes", len(o))
	}
	if tr.Tasks[1].Error != "disk full" || tr.ChainPath() != "" {
		t.Fatalf("error %q, chain path %q (an ERROR task's path is not the chain's)", tr.Tasks[1].Error, tr.ChainPath())
	}
	// An end without a start, and an end of an ended task, are refused.
	for _, c := range []Command{task(PhasePost, 5, TaskDone), task(PhasePost, 0, TaskDone)} {
		if r := mustApply(t, m, c); !errors.Is(r.Err, ErrTransferState) {
			t.Fatalf("%+v: %v, want ErrTransferState", c.Task, r.Err)
		}
	}
	if r := mustApply(t, m, task("later", 0, TaskRunning)); r.Err == nil || !strings.Contains(r.Err.Error(), `phase "later"`) {
		t.Fatalf("unknown phase: %v", r.Err)
	}
}

func TestTaskProgressFenced(t *testing.T) {
	m := running(t)
	mustApply(t, m, task(PhasePost, 0, TaskRunning))
	// A new ACTIVE node: the deposed one's end is refused by the lease,
	// and the new one's before it claimed the transfer by the transfer.
	mustApply(t, m, lease(OpLeaseAcquire, "b", "s2", 2))
	if r := mustApply(t, m, task(PhasePost, 0, TaskDone)); !errors.Is(r.Err, ErrStaleEpoch) {
		t.Fatalf("deposed end: %v", r.Err)
	}
	c := task(PhasePost, 0, TaskDone)
	c.Epoch = 2
	if r := mustApply(t, m, c); !errors.Is(r.Err, ErrStaleEpoch) {
		t.Fatalf("end before the claim: %v", r.Err)
	}
	if tr, _ := m.Transfer(1); tr.Tasks[0].State != TaskRunning {
		t.Fatalf("task %+v", tr.Tasks[0])
	}
	if _, err := Decode(must(Encode(Command{Op: OpTransferTask, Task: &TaskChange{ID: 1, Phase: PhasePost, State: TaskRunning}}))); err == nil {
		t.Fatal("a task change without epoch decoded")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// A takeover leaves a chain past its data RUNNING for the next node, and
// still interrupts a transfer cut in its data.
func TestTakeoverLeavesChains(t *testing.T) {
	m := running(t)
	mustApply(t, m, Command{Op: OpTransferAdd, At: t0, Epoch: 1, Transfer: &Transfer{ID: 2, Agent: "p", Status: StatusRunning, Step: StepData}})
	mustApply(t, m, Command{Op: OpTransferUpdate, Epoch: 1, Change: &TransferChange{ID: 1, Step: StepPostTasks}})
	mustApply(t, m, lease(OpLeaseAcquire, "b", "s2", 2))
	mustApply(t, m, Command{Op: OpTransferTakeover, Epoch: 2})
	one, _ := m.Transfer(1)
	two, _ := m.Transfer(2)
	if one.Status != StatusRunning || two.Status != StatusInterrupted {
		t.Fatalf("after takeover: chain %s, data %s", one.Status, two.Status)
	}
	// A version-2 entry keeps the old behaviour: nodes agree on it.
	m2 := running(t)
	mustApply(t, m2, Command{Op: OpTransferUpdate, Epoch: 1, Change: &TransferChange{ID: 1, Step: StepPostTasks}})
	mustApply(t, m2, lease(OpLeaseAcquire, "b", "s2", 2))
	mustApply(t, m2, Command{Op: OpTransferTakeover, V: 2, Epoch: 2})
	if tr, _ := m2.Transfer(1); tr.Status != StatusInterrupted {
		t.Fatalf("version-2 takeover: %s", tr.Status)
	}
}

func TestChildKeyIdempotent(t *testing.T) {
	m := running(t)
	child := func(id uint64) Command {
		return Command{Op: OpTransferAdd, At: t0, Epoch: 1, Transfer: &Transfer{ID: id, Agent: "p", Status: StatusPlanned, Parent: 1, ChildKey: "1/post/3"}}
	}
	if r := mustApply(t, m, child(7)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := mustApply(t, m, child(8)); r.Err != nil {
		t.Fatalf("second add: %v", r.Err)
	}
	st := m.State()
	if _, dup := st.Transfers[8]; dup || st.ChildOf("1/post/3") != 7 {
		t.Fatalf("child added twice: %v", st.Transfers)
	}
	// The finished child stays in the state while its parent runs, however
	// many transfers finish after it.
	mustApply(t, m, Command{Op: OpTransferUpdate, Epoch: 1, Change: &TransferChange{ID: 7, From: []string{StatusPlanned}, Status: StatusRunning}})
	mustApply(t, m, Command{Op: OpTransferUpdate, Epoch: 1, Change: &TransferChange{ID: 7, From: []string{StatusRunning}, Status: StatusDone}})
	mustApply(t, m, Command{Op: OpTransferArchive, Epoch: 1, Change: &TransferChange{IDs: []uint64{7}}})
	for id := uint64(100); id < 100+RecentWindow+5; id++ {
		mustApply(t, m, Command{Op: OpTransferAdd, At: t0, Transfer: &Transfer{ID: id, Status: StatusDone}})
		mustApply(t, m, Command{Op: OpTransferArchive, Epoch: 1, Change: &TransferChange{IDs: []uint64{id}}})
	}
	if st := m.State(); st.ChildOf("1/post/3") != 7 {
		t.Fatal("child pruned while its parent runs")
	}
}

func TestNeedsVersion3(t *testing.T) {
	withTasks := Rule{Name: "r", PostTasks: []tasks.Task{{Type: "COPY"}}}
	cases := []struct {
		c    Command
		want int
	}{
		{Command{Op: OpTransferTask, Task: &TaskChange{ID: 1}}, 3},
		{Command{Op: OpRulePut, Put: PutCreate, Rule: &withTasks}, 3},
		{Command{Op: OpRulePut, Put: PutCreate, Rule: &Rule{Name: "r"}}, 2},
		{Command{Op: OpTransferAdd, Transfer: &Transfer{ID: 2, ChildKey: "1/post/0"}}, 3},
		{Command{Op: OpTransferAdd, Transfer: &Transfer{ID: 2}}, 1},
		{Command{Op: OpTransferUpdate, Change: &TransferChange{ID: 1}}, 1},
	}
	for _, tc := range cases {
		if got := Needs(tc.c); got != tc.want {
			t.Errorf("Needs(%s %+v) = %d, want %d", tc.c.Op, tc.c, got, tc.want)
		}
	}
	if Version < 3 {
		t.Fatalf("Version %d: the tasks need 3", Version)
	}
}

func TestRetryStartsChainOver(t *testing.T) {
	m := running(t)
	mustApply(t, m, task(PhasePre, 0, TaskRunning))
	mustApply(t, m, task(PhasePre, 0, TaskDone))
	mustApply(t, m, Command{Op: OpTransferUpdate, Epoch: 1, Change: &TransferChange{ID: 1, From: []string{StatusRunning}, Status: StatusError, Step: StepError}})
	mustApply(t, m, Command{Op: OpTransferAction, Change: &TransferChange{ID: 1, Action: "retry"}})
	if tr, _ := m.Transfer(1); len(tr.Tasks) != 0 || tr.Step != StepNone {
		t.Fatalf("after retry: step %s, tasks %+v", tr.Step, tr.Tasks)
	}
}

func TestPGPKeys(t *testing.T) {
	m := New()
	put := Command{Op: OpKeyPut, Put: PutCreate, Key: &PGPKey{Name: "bank", Fingerprint: "AB", Armored: "sealed-1"}}
	if r := mustApply(t, m, put); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := mustApply(t, m, put); !errors.Is(r.Err, ErrExists) {
		t.Fatalf("second create: %v", r.Err)
	}
	st := m.State()
	sealed := st.Sealed()
	if len(sealed) != 1 || sealed[0].Ref != (SealedRef{Kind: "pgpKey", Key: "bank"}) || sealed[0].Old != "sealed-1" {
		t.Fatalf("sealed values %+v", sealed)
	}
	st.setSealed(sealed[0].Ref, "sealed-2")
	if st.Keys["bank"].Armored != "sealed-2" || m.State().Keys["bank"].Armored != "sealed-1" {
		t.Fatal("a rotation's reseal reaches the wrong copy")
	}
	if Needs(put) != 3 || Needs(Command{Op: OpKeyDelete, Name: "bank"}) != 3 {
		t.Fatal("key ops need version 3")
	}
	if r := mustApply(t, m, Command{Op: OpKeyDelete, Name: "bank"}); r.Err != nil || len(m.State().Keys) != 0 {
		t.Fatalf("delete: %v", r.Err)
	}
	if _, err := Decode(must(Encode(Command{Op: OpKeyPut, Key: &PGPKey{Name: "x"}}))); err == nil {
		t.Fatal("a key without its armored text decoded")
	}
}
