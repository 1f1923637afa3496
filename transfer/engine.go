// Package transfer is the transfer engine of the ACTIVE node: it runs the
// client-mode transfers to and from partners (SFTP with pkg/sftp, FTP with
// jlaffaye/ftp) under a concurrency limit, commits their progress as
// checkpoints through Raft, obeys the operators' pause, resume and cancel,
// retries failures with a backoff, resumes what a failed predecessor left
// INTERRUPTED from its last checkpoint, records the files that clients of
// the local servers move (server mode), and flushes finished transfers to
// the history table.
//
// Every change it commits carries the lease epoch it was started under, so
// that the state machine refuses what a deposed ACTIVE node still tries to
// say, and every write to storage or to a partner is preceded by a lease
// check, so that its writes stop when its lease expires.
package transfer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udmg/gateway/confine"
	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/listeners"
	"github.com/udmg/gateway/mirror"
)

// Node is what the engine needs from the local cluster member (*cluster.Node).
type Node interface {
	ID() string
	State() fsm.State
	// Read runs f on the replicated state in place (cluster.Node.Read):
	// ticks and per-file records read it without copying it.
	Read(f func(s *fsm.State))
	Apply(fsm.Command) error
	LeaseValid() bool
	// LeaseRemaining gives the epoch of the lease this node holds.
	LeaseRemaining() (uint64, time.Duration)
}

// History is where finished transfers go (mirror.Store).
type History interface {
	AddHistory(ctx context.Context, hs ...mirror.HistoryEntry) error
}

// Defaults of Config.
const (
	DefaultConcurrency        = 8
	DefaultCheckpointBytes    = 16 << 20
	DefaultCheckpointInterval = 2 * time.Second
	DefaultPoll               = 100 * time.Millisecond
	DefaultMaxAttempts        = 5
	DefaultRetryDelay         = time.Second
	DefaultRetryFactor        = 2.0
)

// Config configures the engine of one ACTIVE term.
type Config struct {
	Node        Node
	GatewayHome string // absolute; local files of transfers are relative to it
	// Protected refuses local paths that reach DataDir or a key file (nil:
	// none, in tests).
	Protected *confine.Guard
	Secrets   *Secrets
	History   History // nil: finished transfers are archived without a history row
	Logger    *slog.Logger
	// IDs hands out the IDs of server-mode transfers; share it with the
	// API of the same node.
	IDs *IDs
	// Meter counts the bytes moved; it outlives the engine of one term
	// (nil: not counted).
	Meter *Meter
	// SourceAddr is the address connections to partners leave from ([vip]
	// SourceAddress); nil: the kernel chooses.
	SourceAddr net.IP
	// Audit records every change the engine makes to storage (nil: no
	// write audit).
	Audit *listeners.Audit
	// Tasks counts the rules' tasks run, by type and outcome; it outlives
	// the engine of one term (nil: not counted).
	Tasks *TaskCounts

	// Concurrency bounds the client-mode transfers running at once.
	Concurrency int
	// A checkpoint is committed after CheckpointBytes or CheckpointInterval,
	// whichever comes first; CheckpointBytes < 0 disables checkpoints (for
	// measuring what they cost).
	CheckpointBytes    int64
	CheckpointInterval time.Duration
	// Poll is how often the engine looks at the replicated state (pause,
	// resume and cancel take effect within it).
	Poll time.Duration
}

func (c *Config) defaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.IDs == nil {
		c.IDs = &IDs{}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.CheckpointBytes == 0 {
		c.CheckpointBytes = DefaultCheckpointBytes
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.Poll <= 0 {
		c.Poll = DefaultPoll
	}
}

// Meter counts the bytes this node's transfers moved, client and server
// mode alike, over every ACTIVE period of the process (for /metrics).
type Meter struct{ sent, received atomic.Uint64 }

// Totals are the bytes sent and received so far.
func (m *Meter) Totals() (sent, received uint64) { return m.sent.Load(), m.received.Load() }

func (m *Meter) add(send bool, n int) {
	switch {
	case m == nil || n <= 0:
	case send:
		m.sent.Add(uint64(n))
	default:
		m.received.Add(uint64(n))
	}
}

// Engine runs transfers for one lease epoch; a node that acquires the lease
// again starts a new one.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	epoch uint64

	results  chan result
	workers  map[uint64]*worker // owned by the loop goroutine
	sessions *sessionPool       // idle partner sessions (sessions.go)
	// kick asks the loop for a pick-up before its next tick: a transfer
	// was added or handed over, or a worker ended and freed its slot.
	kick  chan struct{}
	ended endings // the transfers whose end a parent waits for

	recMu   sync.Mutex
	records map[uint64]*record // open server-mode transfers
	handed  map[uint64]bool    // server uploads in place, for their post-tasks
	// unsettled are the server uploads committed complete whose rename
	// may not be on disk yet (listeners.Placer): not archived until it
	// is, so that their DONE transfer is there to redo it after a crash.
	unsettled map[uint64]bool

	archiveBackoff time.Time
	lastProgress   time.Time

	ctx    context.Context // the engine's life: server-mode pre-tasks run in it
	cancel context.CancelFunc
	done   chan struct{}
}

type worker struct {
	cancel context.CancelCauseFunc
	// inTasks is set once the worker runs post- or error-tasks: it no
	// longer takes a slot of Concurrency (a TRANSFER task waits for a
	// child that needs one).
	inTasks atomic.Bool
}

type result struct {
	id       uint64
	progress int64 // last committed checkpoint, or the final size when done
	size     int64
	err      error
	stopped  error  // why the worker was told to stop (pause, cancel), else nil
	local    string // the transfer's LocalPath
	receive  bool   // a pull: its staging file goes into place once DONE
	// errorTasks: the worker ran the error-tasks of a failed transfer,
	// which now ends in ERROR whatever they did.
	errorTasks bool
	// next is what the loop starts in a new worker once this one is
	// gone: the error-tasks of a transfer that failed for good.
	next *fsm.Transfer
}

// errStopping is the cause of workers stopped with the engine.
var errStopping = errors.New("engine stopping")

// newEngine is an engine of epoch, not started: Start runs it, the
// tests' ticks drive it by hand.
func newEngine(cfg Config, epoch uint64) *Engine {
	ctx, cancel := context.WithCancel(context.Background())
	return &Engine{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "transfers", "epoch", epoch),
		epoch:     epoch,
		results:   make(chan result, cfg.Concurrency),
		workers:   map[uint64]*worker{},
		sessions:  &sessionPool{max: cfg.Concurrency},
		kick:      make(chan struct{}, 1),
		records:   map[uint64]*record{},
		handed:    map[uint64]bool{},
		unsettled: map[uint64]bool{},
		ctx:       ctx,
		cancel:    cancel,
		done:      make(chan struct{}),
	}
}

// Start runs an engine for the node's current lease epoch until Stop.
func Start(cfg Config) (*Engine, error) {
	cfg.defaults()
	epoch, remaining := cfg.Node.LeaseRemaining()
	if epoch == 0 || remaining <= 0 {
		return nil, errors.New("transfer engine: this node holds no lease")
	}
	e := newEngine(cfg, epoch)
	// Before any listener opens: what a predecessor left RUNNING is
	// INTERRUPTED, and its cut uploads are cut back to their checkpoint.
	if err := e.takeover(e.ctx); err != nil {
		e.cancel()
		return nil, err
	}
	go func() {
		defer close(e.done)
		e.run(e.ctx)
	}()
	return e, nil
}

// Stop ends the engine and every worker, and returns once they are gone.
// Nothing more is committed: the next ACTIVE node finds the transfers
// RUNNING under an older epoch and resumes them.
func (e *Engine) Stop() {
	e.cancel()
	<-e.done
}

// Epoch is the lease epoch the engine commits under.
func (e *Engine) Epoch() uint64 { return e.epoch }

// apply commits c under the engine's epoch.
func (e *Engine) apply(c fsm.Command) error {
	c.Epoch, c.At = e.epoch, time.Now()
	return e.cfg.Node.Apply(c)
}

func (e *Engine) update(ch fsm.TransferChange) error {
	return e.apply(fsm.Command{Op: fsm.OpTransferUpdate, Change: &ch})
}

func (e *Engine) run(ctx context.Context) {
	defer e.sessions.closeAll()
	defer e.stopWorkers()
	defer e.startSchedules(ctx)() // schedule.go
	t := time.NewTicker(e.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-e.results:
			e.finish(ctx, r)
			e.wake()
		case <-e.kick:
			e.tick(ctx, false)
		case <-t.C:
			e.tick(ctx, true)
		}
	}
}

// wake has the loop pick up due transfers and handed chains now rather
// than at its next tick (a chain's child waited up to Poll for a slot).
func (e *Engine) wake() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// takeover marks what older epochs left RUNNING as INTERRUPTED (the
// client-mode ones are then resumed like planned ones) and finishes what
// they left on storage (see finishStaging).
func (e *Engine) takeover(ctx context.Context) error {
	before := e.cfg.Node.State()
	for e.orphans() {
		err := e.apply(fsm.Command{Op: fsm.OpTransferTakeover})
		if err == nil {
			break
		}
		if errors.Is(err, fsm.ErrStaleEpoch) || !e.cfg.Node.LeaseValid() {
			return fmt.Errorf("transfer takeover: %w", err)
		}
		e.log.Warn("transfer takeover failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(e.cfg.Poll):
		}
	}
	if err := e.finishStaging(before); err != nil {
		return err
	}
	return nil
}

// orphans reports whether an older epoch left a transfer RUNNING: only then
// does the takeover need a commit before the listeners open (one Raft
// round trip off every failover of a node that ran none). It reads the
// RUNNING transfers only (the state's index).
func (e *Engine) orphans() bool {
	var cut bool
	e.cfg.Node.Read(func(s *fsm.State) {
		for t := range s.Running() {
			if cut = t.CutBefore(e.epoch); cut {
				return
			}
		}
	})
	return cut
}

// finishStaging finishes what older epochs left in staging files (see
// listeners.StagingPrefix), before any listener opens: a DONE upload or
// pull whose staging file is still there is renamed into place (the newest
// DONE of each path); a client's cut upload keeps its staging file, cut
// back to its committed checkpoint (pipelined writes may have left gaps
// after it) for the client to resume (reput, REST); the staging files of
// ended transfers (DONE and put in place by a newer one, ERROR,
// CANCELLED, a cut upload that a newer DONE one replaced, and in the
// directories looked at, transfers the state no longer holds) are removed.
// Every change is lease-checked first.
func (e *Engine) finishStaging(st fsm.State) error {
	ids := slices.Sorted(maps.Keys(st.Transfers))
	newestDone := map[string]uint64{}
	for _, id := range ids {
		if t := st.Transfers[id]; !t.IsSend && t.Status == fsm.StatusDone {
			newestDone[t.LocalPath] = id
		}
	}
	var root *os.Root
	dirs := map[string][]string{}
	for _, id := range ids {
		t := st.Transfers[id]
		if t.IsSend || t.LocalPath == "" {
			continue
		}
		if root == nil {
			var err error
			if root, err = os.OpenRoot(e.cfg.GatewayHome); errors.Is(err, fs.ErrNotExist) {
				// Nothing can be staged in a home that is not there
				// (yet: the listeners make it): failing here would lose
				// the lease and take it again, for ever.
				e.log.Warn("GatewayHome does not exist: no staged file to finish", "path", e.cfg.GatewayHome)
				return nil
			} else if err != nil {
				return fmt.Errorf("open GatewayHome: %w", err)
			}
			defer root.Close()
		}
		dir := filepath.Dir(t.LocalPath)
		names, ok := dirs[dir]
		if !ok {
			d, err := root.Open(dir)
			if err == nil {
				names, _ = d.Readdirnames(-1)
				d.Close()
			}
			dirs[dir] = names
		}
		staged := listeners.StagingOf(names, id)
		if len(staged) == 0 {
			continue
		}
		newest := filepath.Join(dir, staged[len(staged)-1])
		older := staged[:len(staged)-1]
		switch {
		case t.Status == fsm.StatusDone && newestDone[t.LocalPath] == id:
			if err := e.fence("rename", newest); err != nil {
				return err
			}
			if err := root.Rename(newest, t.LocalPath); err != nil {
				e.log.Warn("done transfer not put in place", "id", id, "path", t.LocalPath, "err", err)
				continue
			}
			e.cfg.Audit.LogRename(filepath.Join(e.cfg.GatewayHome, newest), filepath.Join(e.cfg.GatewayHome, t.LocalPath))
			if err := listeners.SyncDir(root, dir); err != nil {
				e.log.Warn("done transfer put in place, directory not synced", "id", id, "err", err)
			}
			e.log.Info("done transfer put in place", "id", id, "path", t.LocalPath, "from", newest)
		case t.Status == fsm.StatusDone, t.Status == fsm.StatusError, t.Status == fsm.StatusCancelled,
			t.IsServer && newestDone[t.LocalPath] > id:
			older = staged
		case t.IsServer && t.CutBefore(e.epoch):
			fi, err := root.Stat(newest)
			if err != nil || fi.Size() <= t.Progress {
				break
			}
			if err := e.fence("truncate", newest); err != nil {
				return err
			}
			if err := truncateIn(root, newest, t.Progress); err != nil {
				e.log.Warn("cut upload not truncated to its checkpoint", "id", id, "path", newest, "err", err)
				break
			}
			e.cfg.Audit.Log("truncate", filepath.Join(e.cfg.GatewayHome, newest), t.Progress, 0)
			e.log.Info("cut upload truncated to its checkpoint", "id", id, "path", newest, "from", fi.Size(), "to", t.Progress)
		}
		for _, n := range older {
			name := filepath.Join(dir, n)
			if err := e.fence("delete", name); err != nil {
				return err
			}
			if err := root.Remove(name); err == nil {
				e.cfg.Audit.Log("delete", filepath.Join(e.cfg.GatewayHome, name), 0, 0)
				e.log.Info("stale staging file removed", "id", id, "path", name, "status", t.Status)
			}
		}
	}
	// Staging files of transfers the state no longer holds (archived
	// out of its window) can be neither resumed nor put in place.
	for _, dir := range slices.Sorted(maps.Keys(dirs)) {
		for _, n := range dirs[dir] {
			id, _, ok := listeners.ParseStaging(n)
			if _, known := st.Transfers[id]; !ok || known {
				continue
			}
			name := filepath.Join(dir, n)
			if err := e.fence("delete", name); err != nil {
				return err
			}
			if err := root.Remove(name); err == nil {
				e.cfg.Audit.Log("delete", filepath.Join(e.cfg.GatewayHome, name), 0, 0)
				e.log.Info("staging file of a forgotten transfer removed", "id", id, "path", name)
			}
		}
	}
	return nil
}

// putInPlace renames the staging file of a pull that is DONE into place.
func (e *Engine) putInPlace(id uint64, local string) {
	root, err := os.OpenRoot(e.cfg.GatewayHome)
	if err == nil {
		defer root.Close()
		err = e.promote(root, id, local, e.epoch)
	}
	if err != nil {
		e.log.Warn("done transfer not put in place; the next ACTIVE node will", "id", id, "path", local, "err", err)
	}
}

func (e *Engine) stopWorkers() {
	for _, w := range e.workers {
		w.cancel(errStopping)
	}
	for len(e.workers) > 0 {
		r := <-e.results
		delete(e.workers, r.id)
	}
}

// tick acts on the state: the operators' pause and cancel, the chains to
// adopt, the due transfers to start; a full one (every Poll, not a
// wake) also commits server-mode progress, archives finished transfers
// and closes idle partner sessions.
func (e *Engine) tick(ctx context.Context, full bool) {
	if !e.cfg.Node.LeaseValid() {
		return
	}
	// One read of the state in place picks what this tick acts on, from
	// the machine's indexes (fsm.State.Due, Unarchived, InTasks): the
	// workers' transfers, the chains to adopt, the due client transfers
	// up to the free slots, a batch of finished ones to archive (full ticks
	// only; a wake is the pick-up part). Its cost follows what is due, not
	// the live transfers; nothing else is copied.
	now := time.Now()
	current := make(map[uint64]fsm.Transfer, len(e.workers))
	var due, finished, chains []fsm.Transfer
	free := e.cfg.Concurrency - e.busy()
	// Uploads handed over are in the state already (their end was
	// committed first): this read picks them, or they went meanwhile.
	e.recMu.Lock()
	handed := e.handed
	e.handed = map[uint64]bool{}
	unsettled := maps.Clone(e.unsettled)
	e.recMu.Unlock()
	e.cfg.Node.Read(func(s *fsm.State) {
		for id := range e.workers {
			if t, ok := s.Transfers[id]; ok {
				current[id] = t
			}
		}
		for t := range s.InTasks() {
			if e.workers[t.ID] == nil && (t.Epoch < e.epoch || handed[t.ID]) {
				chains = append(chains, t)
			}
		}
		for t := range s.Unarchived() {
			if !full || len(finished) == archiveBatch {
				break
			}
			if e.workers[t.ID] == nil && !unsettled[t.ID] {
				finished = append(finished, t)
			}
		}
		if free <= 0 {
			return
		}
		for t := range s.Due(now) {
			if e.workers[t.ID] == nil {
				if due = append(due, t); len(due) == free {
					break
				}
			}
		}
	})
	// Operators' pause and cancel: the transfer left RUNNING under us.
	for id, w := range e.workers {
		if t, ok := current[id]; !ok || t.Status != fsm.StatusRunning || t.Epoch != e.epoch {
			status := "deleted"
			if ok {
				status = t.Status
			}
			w.cancel(fmt.Errorf("transfer %s by an operator", status))
		}
	}
	e.adopt(ctx, chains)
	e.schedule(ctx, due)
	if !full {
		return
	}
	e.proposeStarts()
	if time.Since(e.lastProgress) >= e.cfg.CheckpointInterval {
		e.lastProgress = time.Now()
		e.recordProgress()
	}
	e.archive(ctx, finished)
	e.sessions.reap(now)
}

// busy counts the workers that take a slot of Concurrency.
func (e *Engine) busy() int {
	n := 0
	for _, w := range e.workers {
		if !w.inTasks.Load() {
			n++
		}
	}
	return n
}

// schedule starts the due client-mode transfers (planned and due, or
// interrupted; sorted by ID, so oldest first), up to the concurrency limit.
func (e *Engine) schedule(ctx context.Context, due []fsm.Transfer) {
	busy := e.busy()
	for _, t := range due {
		if busy >= e.cfg.Concurrency {
			return
		}
		id := t.ID
		// An attempt begins with a new transfer or a due retry; resuming
		// a paused or interrupted one goes on with the same attempt, and
		// one paused in its post- or error-tasks goes on with them.
		attempt := t.Attempts == 0 || t.Status == fsm.StatusPlanned && !t.NextRetry.IsZero()
		ch := fsm.TransferChange{ID: id, From: []string{t.Status}, Status: fsm.StatusRunning, Step: fsm.StepSetup,
			NodeID: e.cfg.Node.ID(), Attempt: attempt}
		switch t.Step {
		case fsm.StepPostTasks:
			ch.Step = t.Step
		case fsm.StepError:
			ch.Step, ch.ErrorCode, ch.ErrorDetails = t.Step, t.ErrorCode, t.ErrorDetails
		}
		err := e.update(ch)
		if err != nil {
			e.log.Debug("transfer not started", "id", id, "err", err)
			continue
		}
		if t.Status == fsm.StatusInterrupted {
			e.log.Info("resuming interrupted transfer", "id", id, "from", t.Progress)
		}
		if cur, ok := e.current(id); ok {
			e.startWorker(ctx, cur)
			busy++
		}
	}
}

// startWorker runs what is left of t (work) in a worker of its own.
func (e *Engine) startWorker(ctx context.Context, t fsm.Transfer) {
	wctx, cancel := context.WithCancelCause(ctx)
	w := &worker{cancel: cancel}
	e.workers[t.ID] = w
	go func() {
		r := e.work(wctx, t, w)
		r.id = t.ID
		if cause := context.Cause(wctx); cause != nil && !errors.Is(cause, context.Canceled) {
			r.stopped = cause
		}
		if ctx.Err() != nil {
			// The engine stops: nothing more is committed (Stop).
			r.stopped = errStopping
		}
		// Committed here, not in the loop: the ends of many workers
		// go through Raft at once instead of one after the other.
		e.commitEnd(&r)
		cancel(nil)
		// Whatever it committed, a parent waiting for it looks again.
		e.ended.signal(r.id)
		e.results <- r
	}()
}

// finish forgets a worker that ended (its end committed), and starts what
// comes next for its transfer.
func (e *Engine) finish(ctx context.Context, r result) {
	delete(e.workers, r.id)
	if r.next != nil {
		e.startWorker(ctx, *r.next)
	}
}

// commitEnd commits how a worker ended, from the worker's goroutine.
func (e *Engine) commitEnd(r *result) {
	switch {
	case errors.Is(r.stopped, errStopping):
		return
	case r.stopped != nil:
		// Paused or cancelled: keep the last checkpoint.
		if err := e.update(fsm.TransferChange{ID: r.id, Progress: &r.progress}); err != nil {
			e.log.Debug("final checkpoint", "id", r.id, "err", err)
		}
		e.log.Info("transfer stopped", "id", r.id, "progress", r.progress, "why", r.stopped)
		return
	case r.errorTasks:
		e.endErrorTasks(r.id)
		return
	case r.err == nil:
		err := e.update(fsm.TransferChange{ID: r.id, From: []string{fsm.StatusRunning}, Status: fsm.StatusDone,
			Step: fsm.StepFinalization, Progress: &r.progress, Filesize: &r.size})
		if err != nil {
			e.log.Warn("transfer done but not recorded", "id", r.id, "err", err)
			return
		}
		e.log.Info("transfer done", "id", r.id, "size", r.size)
		if r.receive {
			e.putInPlace(r.id, r.local)
		}
		return
	}
	t, ok := e.current(r.id)
	if !ok {
		return
	}
	// The attempt that failed was counted when it started.
	attempt := max(t.Attempts, 1)
	f := classify(r.err)
	ch := fsm.TransferChange{ID: r.id, From: []string{fsm.StatusRunning}, Progress: &r.progress,
		ErrorCode: f.code, ErrorDetails: r.err.Error()}
	switch {
	case f.permanent:
		ch.Status, ch.Step = fsm.StatusError, fsm.StepError
		e.log.Warn("transfer failed; not retried, no attempt can mend this", "id", r.id, "attempt", attempt, "code", f.code, "err", r.err)
	case attempt >= t.MaxAttempts:
		ch.Status, ch.Step = fsm.StatusError, fsm.StepError
		e.log.Warn("transfer failed; no attempts left", "id", r.id, "attempts", attempt, "code", f.code, "err", r.err)
	default:
		// The n-th retry waits RetryDelay·RetryFactor^(n-1).
		delay := time.Duration(float64(t.RetryDelay) * math.Pow(max(t.RetryFactor, 1), float64(attempt-1)))
		ch.Status, ch.NextRetry = fsm.StatusPlanned, time.Now().Add(delay)
		e.log.Warn("transfer failed; will retry", "id", r.id, "attempt", attempt, "of", t.MaxAttempts, "in", delay, "code", f.code, "err", r.err)
	}
	errorTasks := ch.Status == fsm.StatusError && len(e.ruleOf(t).ErrorTasks) > 0
	if errorTasks {
		// Failed for good: the error-tasks run first, RUNNING in
		// ERROR TASKS (a failover hands them over too).
		ch.Status, ch.NodeID = fsm.StatusRunning, e.cfg.Node.ID()
	}
	if err := e.update(ch); err != nil {
		e.log.Warn("transfer failure not recorded", "id", r.id, "err", err)
		return
	}
	if t, ok := e.current(r.id); ok && errorTasks {
		r.next = &t
	}
}

// endErrorTasks ends transfer id in ERROR once its error-tasks ran (their
// own failure is in their TaskRun), with the error that failed it.
func (e *Engine) endErrorTasks(id uint64) {
	t, ok := e.current(id)
	if !ok {
		return
	}
	if err := e.update(fsm.TransferChange{ID: id, From: []string{fsm.StatusRunning}, Status: fsm.StatusError,
		Step: fsm.StepError, ErrorCode: t.ErrorCode, ErrorDetails: t.ErrorDetails}); err != nil {
		e.log.Warn("transfer failure not recorded", "id", id, "err", err)
	}
}

// archiveBatch bounds the finished transfers archived in one full tick
// (one every Poll): at 100 a tick the archive kept up with 1,000 files/s
// at most and fell behind a single node's small-file rate; 1,000 keeps up
// with 10,000, at about 40 ms of SQLite for a full batch (BenchmarkAddHistory).
const archiveBatch = 1000

// archive writes finished transfers not yet archived (sorted by ID) to
// the history table and marks them archived, so that the state keeps only
// a recent window of them; up to archiveBatch a tick.
func (e *Engine) archive(ctx context.Context, finished []fsm.Transfer) {
	if time.Now().Before(e.archiveBackoff) {
		return
	}
	if len(finished) == 0 {
		return
	}
	ids := make([]uint64, len(finished))
	rows := make([]mirror.HistoryEntry, len(finished))
	for i, t := range finished {
		ids[i], rows[i] = t.ID, HistoryEntry(t)
	}
	if e.cfg.History != nil {
		// One transaction for the batch: archived together or not at all.
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := e.cfg.History.AddHistory(hctx, rows...)
		cancel()
		if err != nil {
			e.log.Warn("history not written; retrying later", "ids", len(ids), "first", ids[0], "err", err)
			e.archiveBackoff = time.Now().Add(5 * time.Second)
			return
		}
	}
	if err := e.apply(fsm.Command{Op: fsm.OpTransferArchive, Change: &fsm.TransferChange{IDs: ids}}); err != nil {
		e.log.Warn("archive transfers", "err", err)
	}
}

// HistoryEntry is how a finished transfer is kept in udmg_transfer_history.
func HistoryEntry(t fsm.Transfer) mirror.HistoryEntry {
	step := t.Step
	if step == "" {
		step = fsm.StepNone
	}
	var chain string
	if len(t.Tasks) > 0 {
		if b, err := json.Marshal(t.Tasks); err == nil {
			chain = string(b)
		}
	}
	return mirror.HistoryEntry{
		Tasks: chain,
		ID:    fmt.Sprint(t.ID), IsServer: t.IsServer, IsSend: t.IsSend, Protocol: t.Protocol, Rule: t.Rule,
		Account: t.Account, Agent: t.Agent, LocalPath: t.LocalPath, RemotePath: t.RemotePath, Filesize: t.Filesize,
		Status: t.Status, Step: step, Progress: t.Progress, ErrorCode: t.ErrorCode, ErrorDetails: t.ErrorDetails,
		Start: t.Start, Stop: t.Stop, NodeID: t.NodeID,
	}
}

// IDs hands out transfer IDs on the node that proposes new transfers: one
// more than any the state or this process has seen. The state machine
// refuses a duplicate, and the proposer then asks again.
type IDs struct{ last atomic.Uint64 }

// Next returns an ID not yet used in the state (whose highest is
// inState, fsm.State.NextTransferID) nor by this process.
func (a *IDs) Next(inState uint64) uint64 {
	for {
		last := a.last.Load()
		next := max(last, inState) + 1
		if a.last.CompareAndSwap(last, next) {
			return next
		}
	}
}

// AddTransfer commits t with a fresh ID from ids, asking again when another
// proposer took the ID meanwhile; it returns the ID. read reads the state in
// place (cluster.Node.Read) for the highest ID it holds.
func AddTransfer(ids *IDs, read func(func(*fsm.State)), apply func(fsm.Command) error, t fsm.Transfer, epoch uint64) (uint64, error) {
	return addWith(ids, read, apply, fsm.Command{Op: fsm.OpTransferAdd, At: time.Now(), Epoch: epoch, Transfer: &t})
}

// addWith commits c, which adds its new c.Transfer, as AddTransfer does.
func addWith(ids *IDs, read func(func(*fsm.State)), apply func(fsm.Command) error, c fsm.Command) (uint64, error) {
	t := *c.Transfer
	c.Transfer = &t
	var err error
	for range 5 {
		var inState uint64
		read(func(s *fsm.State) { inState = s.NextTransferID })
		t.ID = ids.Next(inState)
		err = apply(c)
		if !errors.Is(err, fsm.ErrExists) {
			return t.ID, err
		}
	}
	return 0, err
}

func truncateIn(root *os.Root, name string, size int64) error {
	f, err := root.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
