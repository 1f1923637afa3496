package transfer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/listeners"
)

// The engine's scheduler runs the schedules of the replicated state
// (fsm.Schedule) on the ACTIVE node, in a goroutine of the engine of one
// lease epoch. Each run is committed, with the transfer it creates, in one
// OpScheduleRun that the state machine accepts only for a slot or file not
// taken yet: an engine that dies after the commit leaves the run to its
// transfer (resumed like any other), one that dies before leaves the slot
// or file to its successor, which takes it on its first look.
//
//   - at: the slot is the time; it runs once that time has come.
//   - cron: the slots are the spec's times after the last run (the
//     schedule's creation for the first), run in order. Of the slots that
//     came due before this engine looked at the schedule (a failover, a
//     cluster down, the schedule disabled), it runs only the latest: a
//     cron schedule catches up at most one missed slot, never a burst.
//     Slots that come due while it looks are all run, late if need be.
//   - watch: a file of the local directory is sent once it is complete:
//     seen by two looks Settle apart or more (Interval apart at least) with
//     the same size and mtime. Its run is kept while the file is there
//     (the same name is not sent again), forgotten once it is gone.
//   - poll: the same for the files of a partner's directory, fetched; once
//     a fetch is DONE, After (delete, or move:<dir>) is done at the partner
//     and recorded, and the run is forgotten once the file is gone there.
//     A fetch archived out of the state's window before its After ran
//     (more than fsm.RecentWindow finished transfers meanwhile) keeps its
//     remote file.

// Defaults of watch and poll schedules.
const (
	DefaultScheduleInterval = 10 * time.Second
	scheduleTick            = 500 * time.Millisecond
)

var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a cron schedule's spec: five fields (minute to day of
// week), six with seconds first, or a descriptor (@hourly, @every 2s).
func ParseCron(spec string) (cron.Schedule, error) {
	return cronParser.Parse(spec)
}

// DueSlot is the latest slot of s after last and not after now, zero when
// none is due: the one slot a cron schedule runs however many it missed.
func DueSlot(s cron.Schedule, last, now time.Time) time.Time {
	next := s.Next(last.UTC())
	if next.IsZero() || next.After(now) {
		return time.Time{}
	}
	for range 1_000_000 {
		n := s.Next(next)
		if n.IsZero() || n.After(now) {
			break
		}
		next = n
	}
	return next
}

// NextSlot is the slot a cron schedule runs now, zero when none is due:
// the first after last, unless that came due before since (when this
// engine began to look at the schedule), then the latest due before since.
func NextSlot(s cron.Schedule, last, since, now time.Time) time.Time {
	next := s.Next(last.UTC())
	switch {
	case next.IsZero() || next.After(now):
		return time.Time{}
	case next.After(since):
		return next
	}
	return DueSlot(s, last, since)
}

// Planned is a new client-mode transfer of rule ru with partner p.
func Planned(ru fsm.Rule, p fsm.Partner, account, local, remote string, now time.Time) fsm.Transfer {
	return fsm.Transfer{IsSend: ru.Send, Protocol: p.Protocol, Rule: ru.Name, Agent: p.Name, Account: account,
		LocalPath: local, RemotePath: remote, Filesize: -1, Status: fsm.StatusPlanned, Step: fsm.StepNone, Start: now,
		MaxAttempts: DefaultMaxAttempts, RetryDelay: DefaultRetryDelay, RetryFactor: DefaultRetryFactor}
}

// scheduler is owned by its goroutine (startSchedules), which runs at and
// cron schedules itself and each look of a watch or poll in a goroutine of
// its own (one at a time per schedule), so that a slow partner delays no
// slot.
type scheduler struct {
	e      *Engine
	looked map[string]time.Time // when each watch or poll was last looked at
	since  map[string]time.Time // when each enabled cron was first looked at
	looks  sync.WaitGroup

	mu sync.Mutex
	// busy marks the watches and polls looking now; seen is, per watch
	// or poll, each file as first seen with its current size and mtime
	// (its inner map is its look's).
	busy map[string]bool
	seen map[string]map[string]sighting
	// problem is the last problem logged per schedule (logged once).
	problem map[string]string
}

type sighting struct {
	size  int64
	mtime time.Time
	since time.Time
}

// remoteFile is a regular file of a directory.
type remoteFile struct {
	size  int64
	mtime time.Time
}

// startSchedules runs the scheduler until ctx ends; wait returns once it
// has.
func (e *Engine) startSchedules(ctx context.Context) (wait func()) {
	s := &scheduler{e: e, seen: map[string]map[string]sighting{}, looked: map[string]time.Time{}, since: map[string]time.Time{}, problem: map[string]string{}, busy: map[string]bool{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer s.looks.Wait()
		t := time.NewTicker(scheduleTick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.tick(ctx, time.Now())
			}
		}
	})
	return wg.Wait
}

func (s *scheduler) tick(ctx context.Context, now time.Time) {
	if !s.e.cfg.Node.LeaseValid() {
		return
	}
	var scheds []fsm.Schedule
	s.e.cfg.Node.Read(func(st *fsm.State) {
		for _, sc := range st.Schedules {
			if sc.Enabled {
				scheds = append(scheds, sc)
			}
		}
	})
	slices.SortFunc(scheds, func(a, b fsm.Schedule) int { return cmp.Compare(a.Name, b.Name) })
	names := map[string]bool{}
	for _, sc := range scheds {
		names[sc.Name] = true
		var err error
		switch sc.Kind {
		case fsm.ScheduleAt:
			if !now.Before(sc.At) && sc.At.After(sc.LastRun) {
				err = s.runSlot(sc, sc.At)
			}
		case fsm.ScheduleCron:
			var spec cron.Schedule
			if spec, err = ParseCron(sc.Cron); err == nil {
				if _, ok := s.since[sc.Name]; !ok {
					s.since[sc.Name] = now
				}
				if slot := NextSlot(spec, cmp.Or(sc.LastRun, sc.Created), s.since[sc.Name], now); !slot.IsZero() {
					err = s.runSlot(sc, slot)
				}
			}
		case fsm.ScheduleWatch, fsm.SchedulePoll:
			if now.Sub(s.looked[sc.Name]) < cmp.Or(sc.Interval, DefaultScheduleInterval) {
				continue
			}
			s.mu.Lock()
			busy := s.busy[sc.Name]
			s.busy[sc.Name] = true
			s.mu.Unlock()
			if busy {
				continue
			}
			s.looked[sc.Name] = now
			s.looks.Go(func() {
				var err error
				if sc.Kind == fsm.ScheduleWatch {
					err = s.watch(sc, now)
				} else {
					err = s.poll(ctx, sc, now)
				}
				s.report(sc, err)
				s.mu.Lock()
				delete(s.busy, sc.Name)
				s.mu.Unlock()
			})
			continue
		default:
			err = fmt.Errorf("unknown kind %q", sc.Kind)
		}
		s.report(sc, err)
	}
	for _, m := range []map[string]time.Time{s.looked, s.since} {
		maps.DeleteFunc(m, func(name string, _ time.Time) bool { return !names[name] })
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.DeleteFunc(s.seen, func(name string, _ map[string]sighting) bool { return !names[name] && !s.busy[name] })
	maps.DeleteFunc(s.problem, func(name string, _ string) bool { return !names[name] && !s.busy[name] })
}

// report logs a schedule's problem once, and its end.
func (s *scheduler) report(sc fsm.Schedule, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	s.mu.Lock()
	same := msg == s.problem[sc.Name]
	s.problem[sc.Name] = msg
	s.mu.Unlock()
	if same {
		return
	}
	if err != nil {
		s.e.log.Warn("schedule cannot run", "schedule", sc.Name, "kind", sc.Kind, "err", err)
	} else {
		s.e.log.Info("schedule runs again", "schedule", sc.Name)
	}
}

// objects are the rule and partner of sc's transfers.
func (s *scheduler) objects(sc fsm.Schedule) (fsm.Rule, fsm.Partner, fsm.RemoteAccount, error) {
	var ru fsm.Rule
	var p fsm.Partner
	var acc fsm.RemoteAccount
	var okRule, okPartner, okAccount bool
	s.e.cfg.Node.Read(func(st *fsm.State) {
		ru, okRule = st.Rules[fsm.RuleKey(sc.Rule, sc.Send)]
		p, okPartner = st.Partners[sc.Partner]
		acc, okAccount = st.RemoteAccounts[fsm.AccountKey(sc.Partner, sc.Account)]
	})
	switch {
	case !okRule:
		return ru, p, acc, fmt.Errorf("rule: no %s rule %q", fsm.Rule{Send: sc.Send}.Direction(), sc.Rule)
	case !okPartner:
		return ru, p, acc, fmt.Errorf("partner: no partner %q", sc.Partner)
	case !okAccount:
		return ru, p, acc, fmt.Errorf("account: no account %q at partner %q", sc.Account, sc.Partner)
	}
	return ru, p, acc, nil
}

// runSlot commits the at or cron run of slot with its transfer.
func (s *scheduler) runSlot(sc fsm.Schedule, slot time.Time) error {
	ru, p, _, err := s.objects(sc)
	if err != nil {
		return err
	}
	t := Planned(ru, p, sc.Account, path.Join(ru.LocalDir, sc.File), path.Join(ru.Path, sc.File), time.Now())
	return s.commit(sc, fsm.ScheduleArgs{Slot: slot}, t)
}

// commit takes a run with its transfer; a run taken already (by this
// node's predecessor) is no error.
func (s *scheduler) commit(sc fsm.Schedule, a fsm.ScheduleArgs, t fsm.Transfer) error {
	c := fsm.Command{Op: fsm.OpScheduleRun, Name: sc.Name, ScheduleArgs: &a, Transfer: &t}
	id, err := addWith(s.e.cfg.IDs, s.e.cfg.Node.Read, s.e.apply, c)
	switch {
	case errors.Is(err, fsm.ErrRunTaken):
		s.e.log.Debug("schedule run taken already", "schedule", sc.Name, "slot", a.Slot, "file", a.File)
		return nil
	case err != nil:
		return fmt.Errorf("run not committed: %w", err)
	}
	s.e.log.Info("schedule run", "schedule", sc.Name, "kind", sc.Kind, "slot", a.Slot, "file", a.File, "transfer", id)
	return nil
}

// complete notes the files of sc's directory as seen now and returns the
// complete ones not yet run, sorted.
func (s *scheduler) complete(sc fsm.Schedule, files map[string]remoteFile, now time.Time) []string {
	s.mu.Lock()
	seen := s.seen[sc.Name]
	s.mu.Unlock()
	next := make(map[string]sighting, len(files))
	var ready []string
	for name, f := range files {
		prev, ok := seen[name]
		if !ok || prev.size != f.size || !prev.mtime.Equal(f.mtime) {
			next[name] = sighting{size: f.size, mtime: f.mtime, since: now}
			continue
		}
		next[name] = prev
		if _, taken := sc.Runs[name]; !taken && now.Sub(prev.since) >= sc.Settle {
			ready = append(ready, name)
		}
	}
	s.mu.Lock()
	s.seen[sc.Name] = next
	s.mu.Unlock()
	slices.Sort(ready)
	return ready
}

// forget drops the runs of files no longer in files (keep vetoes one).
func (s *scheduler) forget(sc fsm.Schedule, files map[string]remoteFile, keep func(fsm.ScheduleRun) bool) error {
	var gone []string
	for name, r := range sc.Runs {
		if _, there := files[name]; !there && (keep == nil || !keep(r)) {
			gone = append(gone, name)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	slices.Sort(gone)
	return s.e.apply(fsm.Command{Op: fsm.OpScheduleForget, Name: sc.Name, ScheduleArgs: &fsm.ScheduleArgs{Files: gone}})
}

// watch sends the new complete files of a local directory.
func (s *scheduler) watch(sc fsm.Schedule, now time.Time) error {
	ru, p, _, err := s.objects(sc)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(s.e.cfg.GatewayHome)
	if err != nil {
		return fmt.Errorf("open GatewayHome: %w", err)
	}
	defer root.Close()
	d, err := root.Open(sc.Dir)
	if err != nil {
		return fmt.Errorf("dir %s: %w", sc.Dir, err)
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("dir %s: %w", sc.Dir, err)
	}
	files := map[string]remoteFile{}
	for _, en := range entries {
		if !en.Type().IsRegular() || strings.HasPrefix(en.Name(), ".") {
			continue
		}
		if _, _, staging := listeners.ParseStaging(en.Name()); staging {
			continue
		}
		if fi, err := en.Info(); err == nil {
			files[en.Name()] = remoteFile{size: fi.Size(), mtime: fi.ModTime()}
		}
	}
	for _, name := range s.complete(sc, files, now) {
		t := Planned(ru, p, sc.Account, path.Join(sc.Dir, name), path.Join(ru.Path, name), time.Now())
		f := files[name]
		if err := s.commit(sc, fsm.ScheduleArgs{File: name, Size: f.size, ModTime: f.mtime}, t); err != nil {
			return err
		}
	}
	return s.forget(sc, files, nil)
}

// partnerDir is what a poll needs of a partner session besides a transfer.
type partnerDir interface {
	list(dir string) (map[string]remoteFile, error)
	remove(name string) error
	rename(from, to string) error
	size(remote string) (int64, error)
}

// poll fetches the new complete files of a partner's directory, then
// does After for the fetches DONE.
func (s *scheduler) poll(ctx context.Context, sc fsm.Schedule, now time.Time) (err error) {
	ru, p, acc, err := s.objects(sc)
	if err != nil {
		return err
	}
	sess, release, err := s.e.session(ctx, p, acc)
	if err != nil {
		return err
	}
	defer func() { release(err == nil) }()
	dir, ok := sess.(partnerDir)
	if !ok {
		return fmt.Errorf("partner %s: cannot list directories", p.Name)
	}
	files, err := dir.list(sc.Dir)
	if err != nil {
		return fmt.Errorf("list %s at partner %s: %w", sc.Dir, p.Name, err)
	}
	for _, name := range s.complete(sc, files, now) {
		t := Planned(ru, p, sc.Account, path.Join(ru.LocalDir, name), path.Join(sc.Dir, name), time.Now())
		f := files[name]
		if err := s.commit(sc, fsm.ScheduleArgs{File: name, Size: f.size, ModTime: f.mtime}, t); err != nil {
			return err
		}
	}
	// The fetches' states, for After and for forgetting.
	status := map[uint64]string{}
	s.e.cfg.Node.Read(func(st *fsm.State) {
		for _, r := range sc.Runs {
			if t, ok := st.Transfers[r.TransferID]; ok {
				status[r.TransferID] = t.Status
			}
		}
	})
	for _, name := range slices.Sorted(maps.Keys(sc.Runs)) {
		r := sc.Runs[name]
		if sc.After == "" || r.AfterDone || status[r.TransferID] != fsm.StatusDone {
			continue
		}
		if _, there := files[name]; !there {
			continue
		}
		if err := s.after(sc, dir, name); err != nil {
			return err
		}
	}
	// A run is forgotten once its file is gone and its fetch has ended.
	return s.forget(sc, files, func(r fsm.ScheduleRun) bool {
		st, known := status[r.TransferID]
		return known && !(fsm.Transfer{Status: st}).Finished()
	})
}

// after deletes or moves a fetched file at the partner and records it; a
// file gone already (this node's predecessor did it) counts as done.
func (s *scheduler) after(sc fsm.Schedule, dir partnerDir, name string) error {
	from := path.Join(sc.Dir, name)
	if err := s.e.fence("after "+sc.After, from); err != nil {
		return err
	}
	var err error
	if moveTo, ok := strings.CutPrefix(sc.After, "move:"); ok {
		err = dir.rename(from, path.Join(moveTo, name))
	} else {
		err = dir.remove(from)
	}
	if err != nil {
		if _, serr := dir.size(from); !errors.Is(serr, fs.ErrNotExist) {
			return fmt.Errorf("after %s of %s: %w", sc.After, from, err)
		}
	}
	s.e.log.Info("schedule after done", "schedule", sc.Name, "file", from, "after", sc.After)
	return s.e.apply(fsm.Command{Op: fsm.OpScheduleAfter, Name: sc.Name, ScheduleArgs: &fsm.ScheduleArgs{File: name}})
}
