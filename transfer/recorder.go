package transfer

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/listeners"
)

// Recorder records the files moved by clients of server srv as server-mode
// transfers: RUNNING when opened, DONE when closed normally, INTERRUPTED
// when cut (client gone, lease lost), with progress committed meanwhile.
func (e *Engine) Recorder(srv fsm.Server) listeners.Recorder {
	return &serverRecorder{e: e, srv: srv}
}

type serverRecorder struct {
	e   *Engine
	srv fsm.Server
}

// record is one open server-mode transfer.
type record struct {
	e         *Engine
	id        uint64
	upload    bool
	moved     atomic.Int64 // listeners.Record's progress
	committed int64        // owned by the engine loop
	rule      fsm.Rule     // its tasks, as the rule was at open
	opened    time.Time

	mu sync.Mutex
	// start is the transfer's start while it waits to be proposed (see
	// Begin), then nil; started waits for the verdict on it once it is.
	start   *fsm.Transfer
	started func() error
}

// startDelay is how long a server transfer's start may wait before it is
// proposed (by the engine's tick, proposeStarts): one that ends sooner is
// recorded by its end alone, one command through Raft instead of two; the
// others show RUNNING this much after their open, and at most a Poll more.
const startDelay = 100 * time.Millisecond

// proposer is a Node that can hand a command to Raft without waiting for
// its commit (cluster.Node.Propose).
type proposer interface {
	Propose(fsm.Command) (wait func() error)
}

// preTasks runs the pre-tasks of server-mode transfer id, at its open
// (size -1: unknown) and again at its end with its size: a failure ends
// it in ERROR with the task's error, which the client hears.
func (e *Engine) preTasks(id uint64, ru fsm.Rule, size int64) error {
	if len(ru.PreTasks) == 0 {
		return nil
	}
	t, ok := e.current(id)
	if !ok {
		return fmt.Errorf("transfer %d: %w", id, fsm.ErrUnknownObject)
	}
	t.Filesize = size
	err := e.runPhase(e.ctx, t, fsm.PhasePre, ru.PreTasks, len(t.Tasks) > 0)
	if err == nil {
		return nil
	}
	f := classify(err)
	ch := fsm.TransferChange{ID: t.ID, From: []string{fsm.StatusRunning}, Status: fsm.StatusError, Step: fsm.StepPreTasks,
		ErrorCode: f.code, ErrorDetails: err.Error()}
	if size >= 0 {
		ch.Filesize = &size
	}
	errorTasks := len(ru.ErrorTasks) > 0
	if errorTasks {
		// Refused for good: the error-tasks run first, RUNNING in
		// ERROR TASKS, as a client transfer's (a failover hands them
		// over too); handed to the engine, which starts them at once.
		ch.Status, ch.Step, ch.NodeID = fsm.StatusRunning, fsm.StepError, e.cfg.Node.ID()
	}
	if uerr := e.update(ch); uerr != nil {
		e.log.Warn("refused server transfer not recorded", "id", t.ID, "err", uerr)
	} else if errorTasks {
		e.hand(t.ID)
	}
	e.log.Warn("server transfer refused by a pre-task", "id", t.ID, "rule", t.Rule, "path", t.LocalPath, "err", err)
	return fmt.Errorf("refused by rule %s: %w", t.Rule, err)
}

func (r *serverRecorder) Begin(f listeners.FileTransfer) (listeners.Record, error) {
	e := r.e
	if !e.cfg.Node.LeaseValid() {
		return nil, ErrNotActive
	}
	send := !f.Upload
	var rule string
	var ru fsm.Rule
	var inState uint64
	e.cfg.Node.Read(func(s *fsm.State) {
		rule = matchRule(s.Rules, f.Path, send)
		ru = s.Rules[fsm.RuleKey(rule, send)]
		inState = s.NextTransferID
	})
	t := fsm.Transfer{
		IsServer: true, IsSend: send, Protocol: f.Protocol, Rule: rule,
		Agent: r.srv.Name, Account: f.Login, LocalPath: path.Join(r.srv.Root, f.Login, f.Path), RemotePath: f.Path,
		Filesize: -1, Status: fsm.StatusRunning, Step: fsm.StepData, Start: time.Now(), NodeID: e.cfg.Node.ID(),
	}
	rec := &record{e: e, upload: f.Upload, rule: ru, opened: time.Now(), started: func() error { return nil }}
	if _, ok := e.cfg.Node.(proposer); ok && len(ru.PreTasks) == 0 {
		// The client goes on before the start commits: the start is
		// proposed startDelay later, without waiting, or committed with
		// the end if the transfer ends first; End commits after it, and
		// only End's commit answers the client. What an open cut before
		// its start commits leaves is an unacknowledged staging file of a
		// transfer the state never held, which the next ACTIVE node
		// removes (finishStaging). The ID is free: IDs hands out none
		// twice, and the state read holds every earlier leader's (this
		// one's lease committed after them).
		t.ID = e.cfg.IDs.Next(inState)
		rec.start = &t
	} else {
		id, err := AddTransfer(e.cfg.IDs, e.cfg.Node.Read, e.cfg.Node.Apply, t, e.epoch)
		if err != nil {
			return nil, err
		}
		t.ID = id
		// The pre-tasks check the name at open (the size is not known
		// yet): a refusal fails the client's open.
		if err := e.preTasks(id, ru, -1); err != nil {
			return nil, err
		}
	}
	rec.id = t.ID
	e.recMu.Lock()
	e.records[rec.id] = rec
	e.recMu.Unlock()
	return rec, nil
}

// matchRule finds the rule of a client's file: the one of the right
// direction whose path holds the file, the longest such path winning.
func matchRule(rules map[string]fsm.Rule, file string, send bool) string {
	best, bestLen := "", -1
	for _, r := range rules {
		if r.Send != send {
			continue
		}
		dir := path.Clean("/" + r.Path)
		if (dir == "/" || file == dir || strings.HasPrefix(file, dir+"/")) && len(dir) > bestLen {
			best, bestLen = r.Name, len(dir)
		}
	}
	return best
}

// Staging is (transfer ID, epoch): the upload's staging file is
// listeners.StagingName of it.
func (r *record) Staging() (uint64, uint64) { return r.id, r.e.epoch }

// Pending lists the client's cut uploads of f.Path, newest first: those
// INTERRUPTED (or RUNNING under an older epoch) that no newer DONE upload
// of the same file replaced. It reads only that file's uploads (the state's
// index), in place: a stat of a missing file asks.
func (r *serverRecorder) Pending(f listeners.FileTransfer) []listeners.Pending {
	local := path.Join(r.srv.Root, f.Login, f.Path)
	var out []listeners.Pending
	var done uint64
	r.e.cfg.Node.Read(func(st *fsm.State) {
		for t := range st.Uploads(local) {
			switch {
			case t.Agent != r.srv.Name:
			case t.Status == fsm.StatusDone:
				done = max(done, t.ID)
			case t.InTasks():
				// Complete, in its chain: nothing to resume.
			case t.Status == fsm.StatusInterrupted, t.CutBefore(r.e.epoch):
				out = append(out, listeners.Pending{ID: t.ID, Checkpoint: t.Progress})
			}
		}
	})
	out = slices.DeleteFunc(out, func(p listeners.Pending) bool { return p.ID < done })
	slices.SortFunc(out, func(a, b listeners.Pending) int { return cmp.Compare(b.ID, a.ID) })
	return out
}

// Progress counts the bytes past the furthest point reported so far:
// pipelined writes may report their offsets out of order, and a report
// behind the furthest one moved nothing new.
func (r *record) Progress(p int64) {
	for {
		prev := r.moved.Load()
		if p <= prev {
			return
		}
		if r.moved.CompareAndSwap(prev, p) {
			r.e.cfg.Meter.add(!r.upload, int(p-prev))
			return
		}
	}
}

func (r *record) End(size int64, cut error) error {
	e := r.e
	e.recMu.Lock()
	delete(e.records, r.id)
	e.recMu.Unlock()
	if !e.cfg.Node.LeaseValid() {
		return ErrNotActive // the next ACTIVE node marks it INTERRUPTED
	}
	moved := r.moved.Load()
	ch := fsm.TransferChange{ID: r.id, From: []string{fsm.StatusRunning}, Status: fsm.StatusDone, Step: fsm.StepFinalization,
		Progress: &moved, Filesize: &size}
	switch {
	case cut != nil:
		ch.Status, ch.Step, ch.ErrorCode, ch.ErrorDetails = fsm.StatusInterrupted, fsm.StepData, "TeConnectionReset", cut.Error()
		if errors.Is(cut, listeners.ErrNotActive) || errors.Is(cut, listeners.ErrSessionClosed) {
			ch.ErrorCode = "TeShuttingDown"
		}
	case r.upload && len(r.rule.PreTasks) > 0:
		// The pre-tasks again, now that the size is known.
		if err := e.preTasks(r.id, r.rule, size); err != nil {
			return err
		}
	}
	chain := cut == nil && len(r.rule.PostTasks) > 0
	if chain {
		// Complete: RUNNING on in POST TASKS, which start once an
		// upload is in place (Placed), at once for a download, or on the
		// next ACTIVE node.
		ch.From, ch.Status, ch.Step = nil, "", fsm.StepPostTasks
	}
	settle := cut == nil && r.upload
	if settle {
		e.recMu.Lock()
		e.unsettled[r.id] = true
		e.recMu.Unlock()
	}
	if err := r.commitEnd(ch); err != nil {
		if settle {
			e.settled(r.id)
		}
		if serr := r.started(); serr != nil {
			err = fmt.Errorf("start not recorded: %w", serr)
		}
		e.log.Warn("server transfer end not recorded", "id", r.id, "err", err)
		return err
	}
	if chain && !r.upload {
		e.hand(r.id)
	}
	return nil
}

// commitEnd commits the transfer's end: a change of its committed start,
// or, when the start was not proposed yet, the start and the end in one
// command.
func (r *record) commitEnd(ch fsm.TransferChange) error {
	r.mu.Lock()
	start := r.start
	r.start = nil
	r.mu.Unlock()
	if start == nil {
		return r.e.update(ch)
	}
	t := start.With(ch, r.e.epoch, time.Now())
	return r.e.apply(fsm.Command{Op: fsm.OpTransferAdd, Transfer: &t})
}

// proposeStarts proposes, without waiting, the starts of the server
// transfers open for startDelay (see Begin).
func (e *Engine) proposeStarts() {
	p, ok := e.cfg.Node.(proposer)
	if !ok {
		return
	}
	for _, r := range e.openRecords() {
		if time.Since(r.opened) < startDelay {
			continue
		}
		r.mu.Lock()
		if r.start != nil {
			r.started = p.Propose(fsm.Command{Op: fsm.OpTransferAdd, At: time.Now(), Epoch: e.epoch, Transfer: r.start})
			r.start = nil
		}
		r.mu.Unlock()
	}
}

// hand gives server transfer id, RUNNING in its post- or error-tasks, to
// the engine's chain runner, woken for it at once.
func (e *Engine) hand(id uint64) {
	e.recMu.Lock()
	e.handed[id] = true
	e.recMu.Unlock()
	e.wake()
}

// settled forgets that upload id's rename may not be on disk yet.
func (e *Engine) settled(id uint64) {
	e.recMu.Lock()
	delete(e.unsettled, id)
	e.recMu.Unlock()
}

// Placed hears that a complete upload is in place, its directory fsynced
// (or that the rename failed: the chain or the next ACTIVE node puts it
// there first): it may be archived, and its post-tasks may start.
func (r *record) Placed(err error) {
	r.e.settled(r.id)
	if !r.upload || len(r.rule.PostTasks) == 0 {
		return
	}
	if err != nil {
		r.e.log.Warn("upload not put in place by its session; its chain will", "id", r.id, "err", err)
	}
	r.e.hand(r.id)
}

// recordProgress commits the progress of open server-mode transfers.
func (e *Engine) recordProgress() {
	for _, r := range e.openRecords() {
		moved := r.moved.Load()
		r.mu.Lock()
		unproposed := r.start != nil
		r.mu.Unlock()
		if moved == r.committed || unproposed {
			continue
		}
		if err := e.update(fsm.TransferChange{ID: r.id, Progress: &moved}); err != nil {
			e.log.Debug("server transfer progress", "id", r.id, "err", err)
			continue
		}
		r.committed = moved
	}
}

// openRecords lists the open server-mode transfers.
func (e *Engine) openRecords() []*record {
	e.recMu.Lock()
	defer e.recMu.Unlock()
	return slices.Collect(maps.Values(e.records))
}
