package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/btree"
)

// dump is the index in a comparable form: each order as a sorted list.
func (x *transferIndex) dump() string {
	var b bytes.Buffer
	ids := func(name string, set *btree.BTreeG[uint64]) {
		fmt.Fprintf(&b, "%s:", name)
		set.Ascend(func(id uint64) bool { fmt.Fprintf(&b, " %d", id); return true })
		b.WriteByte('\n')
	}
	ids("ready", x.ready)
	ids("archived", x.archived)
	ids("unarchived", x.unarchived)
	fmt.Fprint(&b, "retrying:")
	x.retrying.Ascend(func(k retryKey) bool { fmt.Fprintf(&b, " %d@%s", k.id, k.at.Format(time.RFC3339Nano)); return true })
	keys := func(name string, m map[uint64]struct{}) {
		fmt.Fprintf(&b, "\n%s: %v", name, slices.Sorted(maps.Keys(m)))
	}
	keys("inTasks", x.inTasks)
	keys("running", x.running)
	keys("held", x.held)
	for _, p := range slices.Sorted(maps.Keys(x.children)) {
		keys(fmt.Sprintf("children of %d", p), x.children[p])
	}
	for _, p := range slices.Sorted(maps.Keys(x.uploads)) {
		keys(fmt.Sprintf("uploads of %q", p), x.uploads[p])
	}
	fmt.Fprintf(&b, "\nstatuses: %v", x.statuses)
	fmt.Fprintf(&b, "\nchildKeys: %v", x.childKeys)
	return b.String()
}

// overWindow reports what the full-scan prune (the window's definition)
// would still remove from s: nothing, once every apply pruned.
func overWindow(s *State) (archived, unarchived int) {
	for _, t := range s.Transfers {
		switch {
		case !t.Finished():
		case t.Parent != 0 && live(s.Transfers, t.Parent):
		case t.Archived:
			archived++
		default:
			unarchived++
		}
	}
	return max(archived-RecentWindow, 0), max(unarchived-MaxUnarchived, 0)
}

// randomTransferCommand is one command of a random transfer history over
// IDs 1..ids: adds (client, server, children with keys), status changes,
// operators' actions, task starts, archives, failovers.
func randomTransferCommand(r *rand.Rand, epoch *uint64, ids int) Command {
	id := uint64(r.IntN(ids) + 1)
	at := t0.Add(time.Duration(r.IntN(1000)) * time.Second)
	statuses := []string{StatusPlanned, StatusRunning, StatusPaused, StatusInterrupted, StatusError, StatusDone, StatusCancelled}
	any := func() []string { return statuses }
	switch r.IntN(10) {
	case 0, 1:
		t := Transfer{ID: id, IsServer: r.IntN(3) == 0, IsSend: r.IntN(2) == 0, Status: statuses[r.IntN(len(statuses))], Agent: "p",
			LocalPath: fmt.Sprintf("in/%d", r.IntN(5))}
		if r.IntN(4) == 0 {
			t.Parent = uint64(r.IntN(ids) + 1)
			t.ChildKey = fmt.Sprintf("%d/post/%d", t.Parent, r.IntN(3))
		}
		return Command{Op: OpTransferAdd, At: at, Epoch: *epoch, Transfer: &t}
	case 2, 3:
		ch := &TransferChange{ID: id, From: any(), Status: statuses[r.IntN(len(statuses))]}
		if r.IntN(2) == 0 {
			ch.NextRetry = at.Add(time.Duration(r.IntN(100)) * time.Second)
		}
		if r.IntN(3) == 0 {
			ch.Step = []string{StepData, StepPostTasks, StepError}[r.IntN(3)]
		}
		return Command{Op: OpTransferUpdate, At: at, Epoch: *epoch, Change: ch}
	case 4:
		return Command{Op: OpTransferAction, At: at, Change: &TransferChange{ID: id, Action: []string{"pause", "resume", "cancel", "retry"}[r.IntN(4)]}}
	case 5:
		return Command{Op: OpTransferTask, At: at, Epoch: *epoch, Task: &TaskChange{ID: id, Phase: PhasePost, State: TaskRunning}}
	case 6, 7, 8:
		var archive []uint64
		for range r.IntN(20) {
			archive = append(archive, uint64(r.IntN(ids)+1))
		}
		return Command{Op: OpTransferArchive, At: at, Epoch: *epoch, Change: &TransferChange{IDs: archive}}
	}
	*epoch++
	return lease(OpLeaseAcquire, "a", fmt.Sprint(*epoch), *epoch)
}

// TestTransferIndexFollowsTable applies random transfer histories and
// checks after every entry that the index is the one a rebuild from the
// table gives, that the window holds, and that a machine restored from a
// snapshot halfway goes on to the same snapshot.
func TestTransferIndexFollowsTable(t *testing.T) {
	seen := map[string]bool{}
	for seed := range uint64(2) {
		r := rand.New(rand.NewPCG(seed, 1))
		m := New()
		epoch := uint64(1)
		mustApply(t, m, lease(OpLeaseAcquire, "a", "1", 1))
		var restored *Machine
		var frozen *Frozen
		var frozenAt []byte
		const steps = 5000
		for i := range steps {
			c := randomTransferCommand(r, &epoch, 400)
			mustApply(t, m, c)
			if c.Op == OpLeaseAcquire {
				mustApply(t, m, Command{Op: OpTransferTakeover, At: t0, Epoch: epoch})
			}
			if restored != nil {
				mustApply(t, restored, c)
				if c.Op == OpLeaseAcquire {
					mustApply(t, restored, Command{Op: OpTransferTakeover, At: t0, Epoch: epoch})
				}
			}
			if got, want := m.s.ix.dump(), newTransferIndex(m.s.Transfers).dump(); got != want {
				t.Fatalf("seed %d, step %d (%s): index\n%s\nrebuilt\n%s", seed, i, c.Op, got, want)
			}
			x := m.s.ix
			seen["ready"] = seen["ready"] || x.ready.Len() > 0
			seen["retrying"] = seen["retrying"] || x.retrying.Len() > 0
			seen["inTasks"] = seen["inTasks"] || len(x.inTasks) > 0
			seen["held"] = seen["held"] || len(x.held) > 0
			seen["running"] = seen["running"] || len(x.running) > 0
			seen["a path's uploads"] = seen["a path's uploads"] || slices.ContainsFunc(slices.Collect(maps.Values(x.uploads)), func(ids map[uint64]struct{}) bool { return len(ids) > 1 })
			seen["window full"] = seen["window full"] || x.archived.Len() >= RecentWindow
			if a, u := overWindow(&m.s); a+u > 0 {
				t.Fatalf("seed %d, step %d (%s): %d archived and %d unarchived beyond the window", seed, i, c.Op, a, u)
			}
			// A frozen state (Freeze) encodes, 50 entries later, as the
			// state did when frozen: no command changed in place what the
			// copy shares with the machine.
			if i%50 == 0 {
				if frozen != nil {
					frozenStill(t, *frozen, frozenAt, fmt.Sprintf("seed %d, step %d", seed, i))
				}
				f := m.Freeze()
				frozen, frozenAt = &f, encodeNow(t, m)
			}
			if i == steps/2 {
				snap, err := m.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				restored = New()
				if err := restored.Restore(snap); err != nil {
					t.Fatal(err)
				}
			}
		}
		a, _ := m.Snapshot()
		b, _ := restored.Snapshot()
		if !bytes.Equal(a, b) {
			t.Fatalf("seed %d: the restored machine went on to another state", seed)
		}
		if got, want := restored.s.ix.dump(), m.s.ix.dump(); got != want {
			t.Fatalf("seed %d: restored index\n%s\nwant\n%s", seed, got, want)
		}
	}
	for _, what := range []string{"ready", "retrying", "inTasks", "running", "held", "a path's uploads", "window full"} {
		if !seen[what] {
			t.Errorf("the histories never reached %s", what)
		}
	}
}

// TestDue: the client transfers due start oldest first, whether they wait
// for nothing (PLANNED, INTERRUPTED) or for a retry that has come; a retry
// still to come, a server-mode transfer and a running one are not due.
func TestDue(t *testing.T) {
	m := New()
	mustApply(t, m, lease(OpLeaseAcquire, "a", "s1", 1))
	for _, tr := range []Transfer{
		{ID: 5, Status: StatusPlanned},
		{ID: 9, Status: StatusInterrupted},
		{ID: 3, Status: StatusPlanned, NextRetry: t0.Add(10 * time.Second)},
		{ID: 7, Status: StatusPlanned, NextRetry: t0.Add(5 * time.Second)},
		{ID: 11, Status: StatusPlanned, NextRetry: t0.Add(100 * time.Second)},
		{ID: 1, Status: StatusPlanned, IsServer: true},
		{ID: 2, Status: StatusRunning},
	} {
		if r := mustApply(t, m, Command{Op: OpTransferAdd, At: t0, Epoch: 1, Transfer: &tr}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	due := func(at time.Time, n int) (ids []uint64) {
		m.Read(func(s *State) {
			for tr := range s.Due(at) {
				if ids = append(ids, tr.ID); len(ids) == n {
					break
				}
			}
		})
		return ids
	}
	for _, c := range []struct {
		at   time.Time
		n    int
		want []uint64
	}{
		{t0, 10, []uint64{5, 9}},
		{t0.Add(20 * time.Second), 10, []uint64{3, 5, 7, 9}},
		{t0.Add(20 * time.Second), 3, []uint64{3, 5, 7}},
		{t0.Add(time.Hour), 10, []uint64{3, 5, 7, 9, 11}},
	} {
		if got := due(c.at, c.n); !slices.Equal(got, c.want) {
			t.Errorf("due at +%s (at most %d): %v, want %v", c.at.Sub(t0), c.n, got, c.want)
		}
	}
	// A copy of the state (no index of its own) answers the same.
	st := m.State()
	var ids []uint64
	for tr := range st.Due(t0.Add(20 * time.Second)) {
		ids = append(ids, tr.ID)
	}
	if !slices.Equal(ids, []uint64{3, 5, 7, 9}) {
		t.Errorf("due in a copy: %v", ids)
	}
}

// encodeNow encodes m's state in place, as Snapshot did before Freeze.
func encodeNow(t *testing.T, m *Machine) []byte {
	t.Helper()
	b, err := json.Marshal(snapshotDoc{V: max(m.written, 1), State: m.s})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// frozenStill fails unless f still encodes as want (the state when frozen).
func frozenStill(t *testing.T, f Frozen, want []byte, where string) {
	t.Helper()
	got, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: a frozen state changed after Freeze: a command changed in place what the copy shares", where)
	}
}
