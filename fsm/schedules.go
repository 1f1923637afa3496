package fsm

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Schedules start client-mode transfers by themselves, on the ACTIVE node
// (transfer: the engine's scheduler): at a time, on a cron spec, for each
// new complete file of a local directory (watch), for each new file of a
// partner's directory (poll).
//
// Exactly once: the engine commits each run (OpScheduleRun) with the
// transfer it creates, in one command, and the machine accepts it only if
// the run's key is not taken yet (create-if-absent): a slot later than the
// schedule's LastRun for at and cron, a file name not in Runs for watch and
// poll. An ACTIVE that dies after the commit leaves a run its successor
// finds; one that dies before it leaves the slot or file to its successor.

// Schedule kinds.
const (
	ScheduleAt    = "at"
	ScheduleCron  = "cron"
	ScheduleWatch = "watch"
	SchedulePoll  = "poll"
)

// MaxSlotRuns bounds the runs an at or cron schedule keeps (the newest).
const MaxSlotRuns = 100

// Schedule is one schedule; the proposer (the API) has checked its fields.
type Schedule struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Rule (with Send, its direction), Partner and Account are those of
	// the transfers it creates.
	Rule    string `json:"rule"`
	Send    bool   `json:"send"`
	Partner string `json:"partner"`
	Account string `json:"account"`
	// At is the time of an at schedule; Cron the spec of a cron one
	// (robfig/cron, seconds optional, descriptors such as @every 2s).
	At   time.Time `json:"at,omitzero"`
	Cron string    `json:"cron,omitempty"`
	// File is what at and cron transfers move, relative to the rule's
	// directories.
	File string `json:"file,omitempty"`
	// Dir is the local directory a watch looks at (relative to
	// GatewayHome), or the partner's directory a poll lists.
	Dir string `json:"dir,omitempty"`
	// After is what a poll does with a remote file once its fetch is
	// DONE: "" nothing, "delete", or "move:<dir>" at the partner.
	After string `json:"after,omitempty"`
	// Interval is how often a watch or poll looks; a file is complete once
	// two looks Settle apart or more saw it with the same size and mtime.
	Interval time.Duration `json:"interval,omitempty"`
	Settle   time.Duration `json:"settle,omitempty"`
	Enabled  bool          `json:"enabled"`

	// Set by the machine, never by a put: when the schedule was created
	// (the first cron slot follows it), the last slot run, and the runs
	// kept (at and cron: by slot, the newest MaxSlotRuns; watch and poll:
	// by file name, until the file is gone).
	Created time.Time              `json:"created,omitzero"`
	LastRun time.Time              `json:"lastRun,omitzero"`
	Runs    map[string]ScheduleRun `json:"runs,omitempty"`
}

// ScheduleRun is one run: the transfer it created and, for watch and poll,
// the file as it was seen (size, mtime) and whether After was done.
type ScheduleRun struct {
	Key        string    `json:"key"`
	TransferID uint64    `json:"transferId"`
	At         time.Time `json:"at"`
	Size       int64     `json:"size,omitempty"`
	ModTime    time.Time `json:"modTime,omitzero"`
	AfterDone  bool      `json:"afterDone,omitempty"`
}

// SlotKey is the key of an at or cron run: the slot in UTC, fixed width,
// so that keys sort as times do.
func SlotKey(slot time.Time) string {
	return slot.UTC().Format("2006-01-02T15:04:05.000000000Z")
}

// BySlot reports whether the kind's runs are keyed by slot (at, cron)
// rather than by file (watch, poll).
func BySlot(kind string) bool { return kind == ScheduleAt || kind == ScheduleCron }

// ScheduleArgs is the body of OpScheduleRun, OpScheduleAfter and
// OpScheduleForget (Command.Name is the schedule).
type ScheduleArgs struct {
	// Slot is the run's slot (at, cron); File the file's name (watch,
	// poll) with its Size and ModTime.
	Slot    time.Time `json:"slot,omitzero"`
	File    string    `json:"file,omitempty"`
	Size    int64     `json:"size,omitempty"`
	ModTime time.Time `json:"modTime,omitzero"`
	// Files are the runs forgotten (OpScheduleForget: their files are
	// gone).
	Files []string `json:"files,omitempty"`
}

// ErrRunTaken refuses a run whose slot or file was run already.
var ErrRunTaken = errors.New("schedule run already taken")

func decodeSchedule(c Command) (known, missing bool) {
	switch c.Op {
	case OpSchedulePut:
		return true, c.Schedule == nil || c.Schedule.Name == ""
	case OpScheduleDelete:
		return true, c.Name == ""
	case OpScheduleRun:
		return true, c.Name == "" || c.Epoch == 0 || c.ScheduleArgs == nil || c.Transfer == nil || c.Transfer.ID == 0
	case OpScheduleAfter, OpScheduleForget:
		return true, c.Name == "" || c.Epoch == 0 || c.ScheduleArgs == nil
	}
	return false, false
}

func (m *Machine) applySchedule(c Command) error {
	s := &m.s
	switch c.Op {
	case OpSchedulePut:
		sc := *c.Schedule
		if err := checkPut(c.Put, s.Schedules, sc.Name, fmt.Sprintf("schedule %q", sc.Name)); err != nil {
			return err
		}
		// The run state stays the machine's.
		sc.Created, sc.LastRun, sc.Runs = c.At, time.Time{}, nil
		if old, ok := s.Schedules[sc.Name]; ok {
			sc.Created, sc.LastRun, sc.Runs = old.Created, old.LastRun, old.Runs
			if sc.Kind == ScheduleAt && !sc.At.Equal(old.At) {
				sc.LastRun = time.Time{} // a new time: a new run
			}
		}
		s.Schedules[sc.Name] = sc
	case OpScheduleDelete:
		return deleteKey(s.Schedules, c.Name, "schedule")
	case OpScheduleRun:
		return m.runSchedule(c)
	case OpScheduleAfter:
		sc, err := m.schedule(c.Name)
		if err != nil {
			return err
		}
		r, ok := sc.Runs[c.ScheduleArgs.File]
		if !ok {
			return fmt.Errorf("schedule %s: no run of file %q: %w", c.Name, c.ScheduleArgs.File, ErrUnknownObject)
		}
		r.AfterDone = true
		sc.Runs = maps.Clone(sc.Runs)
		sc.Runs[r.Key] = r
		s.Schedules[sc.Name] = sc
	case OpScheduleForget:
		sc, err := m.schedule(c.Name)
		if err != nil {
			return err
		}
		sc.Runs = maps.Clone(sc.Runs)
		for _, f := range c.ScheduleArgs.Files {
			delete(sc.Runs, f)
		}
		s.Schedules[sc.Name] = sc
	}
	return nil
}

func (m *Machine) schedule(name string) (Schedule, error) {
	sc, ok := m.s.Schedules[name]
	if !ok {
		return sc, fmt.Errorf("schedule %s: %w", name, ErrUnknownObject)
	}
	return sc, nil
}

// runSchedule takes a run's slot or file and adds its transfer, both or
// neither: a slot not after LastRun, or a file already in Runs, is
// refused with ErrRunTaken.
func (m *Machine) runSchedule(c Command) error {
	s := &m.s
	sc, err := m.schedule(c.Name)
	if err != nil {
		return err
	}
	a := c.ScheduleArgs
	run := ScheduleRun{TransferID: c.Transfer.ID, At: c.At}
	if BySlot(sc.Kind) {
		if a.Slot.IsZero() {
			return fmt.Errorf("schedule %s: a %s run needs its slot", sc.Name, sc.Kind)
		}
		if !a.Slot.After(sc.LastRun) {
			return fmt.Errorf("schedule %s: slot %s (last run %s): %w", sc.Name, SlotKey(a.Slot), SlotKey(sc.LastRun), ErrRunTaken)
		}
		run.Key = SlotKey(a.Slot)
	} else {
		if a.File == "" {
			return fmt.Errorf("schedule %s: a %s run needs its file", sc.Name, sc.Kind)
		}
		if _, taken := sc.Runs[a.File]; taken {
			return fmt.Errorf("schedule %s: file %q: %w", sc.Name, a.File, ErrRunTaken)
		}
		run.Key, run.Size, run.ModTime = a.File, a.Size, a.ModTime
	}
	if err := m.addTransfer(c); err != nil {
		return err
	}
	sc.Runs = maps.Clone(sc.Runs)
	if sc.Runs == nil {
		sc.Runs = map[string]ScheduleRun{}
	}
	sc.Runs[run.Key] = run
	if BySlot(sc.Kind) {
		sc.LastRun = a.Slot
		if len(sc.Runs) > MaxSlotRuns {
			keys := slices.Sorted(maps.Keys(sc.Runs))
			for _, k := range keys[:len(keys)-MaxSlotRuns] {
				delete(sc.Runs, k)
			}
		}
	}
	s.Schedules[sc.Name] = sc
	return nil
}

// isScheduleOp reports whether op is one of the schedule commands.
func isScheduleOp(op Op) bool {
	switch op {
	case OpSchedulePut, OpScheduleDelete, OpScheduleRun, OpScheduleAfter, OpScheduleForget:
		return true
	}
	return false
}

// needsSchedules reports whether c is or carries a schedule command
// (version 3).
func needsSchedules(c Command) bool {
	return isScheduleOp(c.Op) || c.Schedule != nil || c.ScheduleArgs != nil
}
