package fsm

import (
	"errors"
	"testing"
	"time"
)

func scheduleRun(name string, epoch, id uint64, a ScheduleArgs) Command {
	return Command{Op: OpScheduleRun, At: t0, Epoch: epoch, Name: name, ScheduleArgs: &a,
		Transfer: &Transfer{ID: id, Agent: "p", Status: StatusPlanned, MaxAttempts: 3}}
}

// TestScheduleSlotCreateIfAbsent: a cron slot is taken once with its
// transfer; the same slot or an earlier one again (a successor rerunning
// it) is refused and adds no transfer; a later one is taken.
func TestScheduleSlotCreateIfAbsent(t *testing.T) {
	m := activeOn(t)
	mustApply(t, m, Command{Op: OpSchedulePut, Put: PutCreate, At: t0, Schedule: &Schedule{Name: "c", Kind: ScheduleCron, Cron: "@every 2s", Enabled: true}})
	slot := t0.Add(2 * time.Second)
	if r := mustApply(t, m, scheduleRun("c", 1, 10, ScheduleArgs{Slot: slot})); r.Err != nil {
		t.Fatal(r.Err)
	}
	// The successor (epoch 2) finds the slot taken.
	mustApply(t, m, lease(OpLeaseAcquire, "b", "s2", 2))
	for _, s := range []time.Time{slot, slot.Add(-time.Second)} {
		if r := mustApply(t, m, scheduleRun("c", 2, 11, ScheduleArgs{Slot: s})); !errors.Is(r.Err, ErrRunTaken) {
			t.Fatalf("slot %s again: %v, want ErrRunTaken", s, r.Err)
		}
	}
	if _, ok := m.State().Transfers[11]; ok {
		t.Fatal("a refused run added its transfer")
	}
	// The deposed epoch cannot take the next slot either.
	if r := mustApply(t, m, scheduleRun("c", 1, 12, ScheduleArgs{Slot: slot.Add(2 * time.Second)})); !errors.Is(r.Err, ErrStaleEpoch) {
		t.Fatalf("run under a deposed epoch: %v", r.Err)
	}
	if r := mustApply(t, m, scheduleRun("c", 2, 12, ScheduleArgs{Slot: slot.Add(2 * time.Second)})); r.Err != nil {
		t.Fatal(r.Err)
	}
	// A run whose transfer ID is taken takes no slot.
	if r := mustApply(t, m, scheduleRun("c", 2, 12, ScheduleArgs{Slot: slot.Add(4 * time.Second)})); !errors.Is(r.Err, ErrExists) {
		t.Fatalf("run with a used transfer ID: %v", r.Err)
	}
	sc := m.State().Schedules["c"]
	if !sc.LastRun.Equal(slot.Add(2*time.Second)) || len(sc.Runs) != 2 || sc.Runs[SlotKey(slot)].TransferID != 10 || !sc.Created.Equal(t0) {
		t.Fatalf("schedule after runs: %+v", sc)
	}
	// An operator's update keeps the run state.
	mustApply(t, m, Command{Op: OpSchedulePut, Put: PutUpdate, At: t0.Add(time.Hour), Schedule: &Schedule{Name: "c", Kind: ScheduleCron, Cron: "@every 5s"}})
	if sc := m.State().Schedules["c"]; len(sc.Runs) != 2 || !sc.LastRun.Equal(slot.Add(2*time.Second)) || !sc.Created.Equal(t0) || sc.Cron != "@every 5s" {
		t.Fatalf("update lost the run state: %+v", sc)
	}
	// The kept runs are bounded.
	for i := range MaxSlotRuns + 5 {
		if r := mustApply(t, m, scheduleRun("c", 2, uint64(100+i), ScheduleArgs{Slot: slot.Add(time.Duration(10+i) * time.Second)})); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if n := len(m.State().Schedules["c"].Runs); n != MaxSlotRuns {
		t.Fatalf("%d runs kept, want %d", n, MaxSlotRuns)
	}
}

// TestScheduleAtRescheduled: an at schedule runs its time once; given a
// new time, it runs again.
func TestScheduleAtRescheduled(t *testing.T) {
	m := activeOn(t)
	at := t0.Add(time.Minute)
	mustApply(t, m, Command{Op: OpSchedulePut, Put: PutCreate, At: t0, Schedule: &Schedule{Name: "a", Kind: ScheduleAt, At: at, File: "f", Enabled: true}})
	if r := mustApply(t, m, scheduleRun("a", 1, 30, ScheduleArgs{Slot: at})); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := mustApply(t, m, scheduleRun("a", 1, 31, ScheduleArgs{Slot: at})); !errors.Is(r.Err, ErrRunTaken) {
		t.Fatalf("the same time again: %v", r.Err)
	}
	mustApply(t, m, Command{Op: OpSchedulePut, Put: PutUpdate, At: t0, Schedule: &Schedule{Name: "a", Kind: ScheduleAt, At: at, File: "g", Enabled: true}})
	if r := mustApply(t, m, scheduleRun("a", 1, 31, ScheduleArgs{Slot: at})); !errors.Is(r.Err, ErrRunTaken) {
		t.Fatalf("the same time after an update of another field: %v", r.Err)
	}
	later := at.Add(time.Hour)
	mustApply(t, m, Command{Op: OpSchedulePut, Put: PutUpdate, At: t0, Schedule: &Schedule{Name: "a", Kind: ScheduleAt, At: later, File: "g", Enabled: true}})
	if r := mustApply(t, m, scheduleRun("a", 1, 31, ScheduleArgs{Slot: later})); r.Err != nil {
		t.Fatalf("the new time: %v", r.Err)
	}
	if sc := m.State().Schedules["a"]; len(sc.Runs) != 2 || !sc.LastRun.Equal(later) {
		t.Fatalf("runs %+v, last %s", sc.Runs, sc.LastRun)
	}
}

// TestScheduleWatchSet: each file is taken once; forgotten (gone), it can
// be taken again; After is recorded.
func TestScheduleWatchSet(t *testing.T) {
	m := activeOn(t)
	mustApply(t, m, Command{Op: OpSchedulePut, Put: PutCreate, At: t0, Schedule: &Schedule{Name: "w", Kind: ScheduleWatch, Dir: "out", Enabled: true}})
	if r := mustApply(t, m, scheduleRun("w", 1, 20, ScheduleArgs{File: "a.txt", Size: 5, ModTime: t0})); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := mustApply(t, m, scheduleRun("w", 1, 21, ScheduleArgs{File: "a.txt", Size: 5, ModTime: t0})); !errors.Is(r.Err, ErrRunTaken) {
		t.Fatalf("a.txt again: %v", r.Err)
	}
	if r := mustApply(t, m, scheduleRun("w", 1, 21, ScheduleArgs{Slot: t0})); r.Err == nil {
		t.Fatal("a watch run without a file accepted")
	}
	mustApply(t, m, Command{Op: OpScheduleAfter, Epoch: 1, Name: "w", ScheduleArgs: &ScheduleArgs{File: "a.txt"}})
	if r := m.State().Schedules["w"].Runs["a.txt"]; !r.AfterDone || r.TransferID != 20 || r.Size != 5 {
		t.Fatalf("run of a.txt: %+v", r)
	}
	mustApply(t, m, Command{Op: OpScheduleForget, Epoch: 1, Name: "w", ScheduleArgs: &ScheduleArgs{Files: []string{"a.txt"}}})
	if len(m.State().Schedules["w"].Runs) != 0 {
		t.Fatal("forgotten run kept")
	}
	if r := mustApply(t, m, scheduleRun("w", 1, 22, ScheduleArgs{File: "a.txt"})); r.Err != nil {
		t.Fatalf("a.txt after it was gone: %v", r.Err)
	}
	if r := mustApply(t, m, Command{Op: OpScheduleForget, Name: "w", ScheduleArgs: &ScheduleArgs{}}); r.Err == nil {
		t.Fatal("forget without an epoch accepted")
	}
}

// TestScheduleNeeds: every schedule command needs version 3, and an
// older binary (version 2) stops at one rather than skipping it.
func TestScheduleNeeds(t *testing.T) {
	for _, c := range []Command{
		{Op: OpSchedulePut, Put: PutCreate, Schedule: &Schedule{Name: "x"}},
		{Op: OpScheduleDelete, Name: "x"},
		scheduleRun("x", 1, 1, ScheduleArgs{File: "f"}),
		{Op: OpScheduleAfter, Epoch: 1, Name: "x", ScheduleArgs: &ScheduleArgs{File: "f"}},
		{Op: OpScheduleForget, Epoch: 1, Name: "x", ScheduleArgs: &ScheduleArgs{}},
	} {
		if n := Needs(c); n != 3 {
			t.Errorf("Needs(%s) = %d, want 3", c.Op, n)
		}
	}
	if n := Needs(Command{Op: OpRulePut, Put: PutCreate, Rule: &Rule{Name: "r"}}); n != 2 {
		t.Errorf("Needs(rule.put) = %d, want 2", n)
	}
	if Version < 3 {
		t.Fatalf("Version %d does not apply schedules", Version)
	}
}
