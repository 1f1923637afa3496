package transfer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/listeners"
	"github.com/udmg/gateway/tasks"
)

// The chain runner: the rule's pre-tasks before a client transfer's data,
// its post-tasks after them (after a partner's upload is in place, for
// server-mode ones), its error-tasks when the transfer fails for good.
// Each task's start and end are committed (fsm.OpTransferTask) under the
// engine's epoch; a chain cut by a failover stays RUNNING in POST TASKS or
// ERROR TASKS and the next ACTIVE node goes on at the first task not DONE,
// running again the one whose end was never committed (tasks are
// idempotent).

// TaskCounts counts the tasks this node ran, by type and outcome (DONE,
// ERROR), over every ACTIVE period of the process (for /metrics).
type TaskCounts struct {
	mu sync.Mutex
	n  map[[2]string]uint64
}

// Counts is a copy of the counts, keyed by (type, outcome).
func (c *TaskCounts) Counts() map[[2]string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

func (c *TaskCounts) add(typ, outcome string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[[2]string]uint64{}
	}
	c.n[[2]string{typ, outcome}]++
}

// ruleOf is the rule a transfer runs under (zero when deleted meanwhile).
func (e *Engine) ruleOf(t fsm.Transfer) fsm.Rule {
	var ru fsm.Rule
	e.cfg.Node.Read(func(s *fsm.State) { ru = s.Rules[fsm.RuleKey(t.Rule, t.IsSend)] })
	return ru
}

// current re-reads transfer id from the state (the chain's progress).
func (e *Engine) current(id uint64) (fsm.Transfer, bool) {
	var t fsm.Transfer
	var ok bool
	e.cfg.Node.Read(func(s *fsm.State) { t, ok = s.Transfers[id] })
	return t, ok
}

// work runs what is left of transfer t: for a client transfer its
// pre-tasks, data and post-tasks; for one RUNNING in POST TASKS (a server
// upload in place, a chain taken over) its post-tasks; in ERROR TASKS its
// error-tasks.
func (e *Engine) work(ctx context.Context, t fsm.Transfer, w *worker) result {
	ru := e.ruleOf(t)
	r := result{progress: t.Progress, size: t.Filesize, local: t.LocalPath}
	switch t.Step {
	case fsm.StepError:
		w.inTasks.Store(true)
		r.errorTasks = true
		r.err = e.runPhase(ctx, t, fsm.PhaseError, ru.ErrorTasks, false)
		return r
	case fsm.StepPostTasks:
		if err := e.placeStaged(t); err != nil {
			r.err = err
			return r
		}
	default:
		if len(ru.PreTasks) > 0 {
			if err := e.update(fsm.TransferChange{ID: t.ID, Step: fsm.StepPreTasks}); err != nil {
				r.err = err
				return r
			}
			if r.err = e.runPhase(ctx, t, fsm.PhasePre, ru.PreTasks, false); r.err != nil {
				return r
			}
		}
		r = e.runTransfer(ctx, t)
		if r.err != nil || len(ru.PostTasks) == 0 {
			return r
		}
		// The data are there: the chain goes on in POST TASKS, across a
		// failover too.
		if err := e.update(fsm.TransferChange{ID: t.ID, Step: fsm.StepPostTasks, Progress: &r.progress, Filesize: &r.size}); err != nil {
			r.err = err
			return r
		}
		if r.receive {
			e.putInPlace(t.ID, t.LocalPath)
			r.receive = false
		}
		var ok bool
		if t, ok = e.current(t.ID); !ok {
			r.err = fmt.Errorf("transfer %d: %w", r.id, fsm.ErrUnknownObject)
			return r
		}
	}
	w.inTasks.Store(true)
	r.err = e.runPhase(ctx, t, fsm.PhasePost, ru.PostTasks, false)
	return r
}

// placeStaged puts in place the staging file a DONE pull or a complete
// upload left when its node died between committing POST TASKS and the
// rename (the newest epoch's).
func (e *Engine) placeStaged(t fsm.Transfer) error {
	if t.IsSend || t.LocalPath == "" {
		return nil
	}
	root, err := os.OpenRoot(e.cfg.GatewayHome)
	if err != nil {
		return transient(fsm.TeInternal, fmt.Errorf("open GatewayHome: %w", err))
	}
	defer root.Close()
	staged, err := listeners.FindStaging(root, filepath.Dir(t.LocalPath), t.ID)
	if err != nil || len(staged) == 0 {
		return err
	}
	_, epoch, _ := listeners.ParseStaging(staged[len(staged)-1])
	return e.promote(root, t.ID, t.LocalPath, epoch)
}

// runPhase runs the tasks of list (phase of t's rule) from the first one
// not DONE on, committing each one's start and end. again runs the DONE
// ones too (a server upload's pre-tasks, checked again with its size).
func (e *Engine) runPhase(ctx context.Context, t fsm.Transfer, phase string, list []tasks.Task, again bool) error {
	facts := e.facts(t)
	if phase == fsm.PhaseError {
		if err := e.refusedFile(t, &facts); err != nil {
			return err
		}
	}
	env := e.env(t)
	for i, task := range list {
		if tr, ok := t.TaskRun(phase, i); ok && tr.State == fsm.TaskDone && !again {
			continue
		}
		what := fmt.Sprintf("rule %s: %s task %d (%s)", t.Rule, phase, i+1, task.Type)
		if err := e.fence("run", what); err != nil {
			return err
		}
		start := fsm.TaskChange{ID: t.ID, Phase: phase, Index: i, Type: task.Type, State: fsm.TaskRunning, NodeID: e.cfg.Node.ID()}
		if err := e.apply(fsm.Command{Op: fsm.OpTransferTask, Task: &start}); err != nil {
			return fmt.Errorf("%s: start not recorded: %w", what, err)
		}
		facts.Now, facts.TaskKey = time.Now(), phase+"/"+strconv.Itoa(i)
		res, err := e.runTask(ctx, task, facts, env)
		if ctx.Err() != nil {
			// Cut: its end is unknown, the next run does it again.
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		}
		end := start
		end.State, end.Output, end.Path = fsm.TaskDone, res.Output, res.Path
		if err != nil {
			end.State, end.Error, end.Path = fsm.TaskError, err.Error(), ""
		}
		if cerr := e.apply(fsm.Command{Op: fsm.OpTransferTask, Task: &end}); cerr != nil {
			return fmt.Errorf("%s: end not recorded: %w", what, cerr)
		}
		e.cfg.Tasks.add(task.Type, end.State)
		if err != nil {
			e.log.Warn("task failed", "id", t.ID, "rule", t.Rule, "phase", phase, "task", i+1, "type", task.Type, "err", err)
			return permanent(fsm.TeExternalOperation, fmt.Errorf("%s: %w", what, err))
		}
		e.log.Info("task done", "id", t.ID, "rule", t.Rule, "phase", phase, "task", i+1, "type", task.Type)
		if res.Path != "" {
			facts.Path, facts.Name, facts.NoFile = res.Path, "", false
		}
	}
	return nil
}

func (e *Engine) runTask(ctx context.Context, task tasks.Task, f tasks.Facts, env tasks.Env) (tasks.Result, error) {
	return tasks.Run(ctx, task, f, env)
}

// facts are what the tasks of t know of it.
func (e *Engine) facts(t fsm.Transfer) tasks.Facts {
	return tasks.Facts{TransferID: t.ID, Rule: t.Rule, Send: t.IsSend, IsServer: t.IsServer, Partner: t.Agent, Account: t.Account,
		Path: t.ChainPath(), OriginalName: path.Base(filepath.ToSlash(t.LocalPath)), Filesize: t.Filesize, RemoteHost: t.Agent,
		ErrorCode: t.ErrorCode, ErrorMsg: t.ErrorDetails, NodeID: e.cfg.Node.ID()}
}

// refusedFile points the error-tasks of a receive refused by a pre-task,
// before any of them moved its file, at what the transfer has: the staged
// file of an upload refused at its end (named as the partner named it),
// else no file (refused at open, or a pull refused before its data). A
// file at LocalPath is not this transfer's but an older one, which the
// error-tasks must not touch. After a crash in the middle of a MOVE of the
// staged file, the rerun finds no staged file: the file is where the MOVE
// put it, and the tasks after it run without a file.
func (e *Engine) refusedFile(t fsm.Transfer, f *tasks.Facts) error {
	if t.IsSend || f.Path != t.LocalPath || !slices.ContainsFunc(t.Tasks, func(r fsm.TaskRun) bool {
		return r.Phase == fsm.PhasePre && r.State == fsm.TaskError
	}) {
		return nil
	}
	root, err := os.OpenRoot(e.cfg.GatewayHome)
	if err != nil {
		return transient(fsm.TeInternal, fmt.Errorf("open GatewayHome: %w", err))
	}
	defer root.Close()
	dir := filepath.Dir(filepath.FromSlash(t.LocalPath))
	staged, err := listeners.FindStaging(root, dir, t.ID)
	if err != nil {
		return transient(fsm.TeInternal, err)
	}
	if len(staged) == 0 {
		f.Path, f.NoFile = "", true
		return nil
	}
	f.Path, f.Name = filepath.Join(dir, staged[len(staged)-1]), path.Base(filepath.ToSlash(t.LocalPath))
	return nil
}

// env is what the tasks of parent may touch: GatewayHome, under the lease
// (every path a task checks is refused once the lease is gone).
func (e *Engine) env(parent fsm.Transfer) tasks.Env {
	return tasks.Env{
		Home:   e.cfg.GatewayHome,
		Guard:  leaseGuard{e},
		Keys:   e.key,
		Secret: e.secret,
		StartChild: func(ctx context.Context, c tasks.Child) (uint64, error) {
			return e.startChild(parent, c)
		},
		WaitChild: e.waitChild,
		Dial:      e.dialer(),
	}
}

// key opens the OpenPGP key stored under name (fsm.State.Keys).
func (e *Engine) key(name string) (string, error) {
	var k fsm.PGPKey
	var ok bool
	e.cfg.Node.Read(func(s *fsm.State) { k, ok = s.Keys[name] })
	return e.open("key", name, k.Armored, ok, fsm.ErrUnknownObject)
}

// secret opens the tasks' secret stored under name (fsm.State.SecretValues).
func (e *Engine) secret(name string) (string, error) {
	var x fsm.Secret
	var ok bool
	e.cfg.Node.Read(func(s *fsm.State) { x, ok = s.SecretValues[name] })
	return e.open("secret", name, x.Value, ok, tasks.ErrUnknownSecret)
}

// open opens the sealed value of the kind's object name (found: ok; else
// missing names the error).
func (e *Engine) open(kind, name, sealed string, ok bool, missing error) (string, error) {
	if !ok {
		return "", fmt.Errorf("%s %q: %w", kind, name, missing)
	}
	if e.cfg.Secrets == nil {
		return "", fmt.Errorf("%s %q: no AES passphrase to open it", kind, name)
	}
	b, err := e.cfg.Secrets.Open(sealed)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", kind, name, err)
	}
	return string(b), nil
}

// leaseGuard is the tasks' path check: the node's lease, then the
// protected paths.
type leaseGuard struct{ e *Engine }

func (g leaseGuard) File(p string) error {
	if err := g.e.fence("use", p); err != nil {
		return err
	}
	return g.e.cfg.Protected.File(p)
}

func (g leaseGuard) Tree(p string) error {
	if err := g.e.fence("use", p); err != nil {
		return err
	}
	return g.e.cfg.Protected.Tree(p)
}

// startChild adds the client transfer a TRANSFER task of parent asks for,
// once: a rerun of the task finds the child by its key.
func (e *Engine) startChild(parent fsm.Transfer, c tasks.Child) (uint64, error) {
	if c.Key == "" {
		return 0, errors.New("child transfer without a key")
	}
	var id uint64
	var ru fsm.Rule
	var p fsm.Partner
	var okRule, okPartner, okAccount bool
	e.cfg.Node.Read(func(s *fsm.State) {
		id = s.ChildOf(c.Key)
		ru, okRule = s.Rules[fsm.RuleKey(c.Rule, true)]
		p, okPartner = s.Partners[c.Partner]
		_, okAccount = s.RemoteAccounts[fsm.AccountKey(c.Partner, c.Account)]
	})
	switch {
	case id != 0:
		return id, nil
	case !okRule:
		return 0, fmt.Errorf("rule: no send rule %q", c.Rule)
	case !okPartner:
		return 0, fmt.Errorf("to: no partner %q", c.Partner)
	case !okAccount:
		return 0, fmt.Errorf("as: no account %q at partner %q", c.Account, c.Partner)
	case !filepath.IsLocal(c.File):
		return 0, fmt.Errorf("file: %q is not a relative path inside GatewayHome", c.File)
	}
	// A relative remote name is in the rule's path, as an API transfer's.
	remote := c.Remote
	if remote == "" {
		remote = path.Base(filepath.ToSlash(c.File))
	}
	if !path.IsAbs(remote) {
		remote = path.Join(ru.Path, remote)
	}
	t := Planned(ru, p, c.Account, filepath.ToSlash(c.File), remote, time.Now())
	t.Parent, t.ChildKey = parent.ID, c.Key
	if _, err := AddTransfer(e.cfg.IDs, e.cfg.Node.Read, e.apply, t, e.epoch); err != nil {
		return 0, err
	}
	// The machine added nothing if the key was there: ask it which.
	e.cfg.Node.Read(func(s *fsm.State) { id = s.ChildOf(c.Key) })
	if id == 0 {
		return 0, fmt.Errorf("child transfer %s not found after adding it", c.Key)
	}
	e.log.Info("child transfer added", "parent", parent.ID, "id", id, "key", c.Key, "partner", p.Name, "file", c.File)
	e.wake()
	return id, nil
}

// waitChild waits for child id to end: nil when DONE. The engine wakes it
// when a worker of the child ends; it also looks every 10 Polls, for the
// ends no worker of this engine commits (an operator cancelling a child
// not started).
func (e *Engine) waitChild(ctx context.Context, id uint64) error {
	t := time.NewTicker(10 * e.cfg.Poll)
	defer t.Stop()
	defer e.ended.forget(id)
	for {
		woken := e.ended.watch(id)
		c, ok := e.current(id)
		switch {
		case !ok:
			return fmt.Errorf("child transfer %d: %w", id, fsm.ErrUnknownObject)
		case c.Status == fsm.StatusDone:
			return nil
		case c.Finished():
			return fmt.Errorf("child transfer %d is %s: %s %s", id, c.Status, c.ErrorCode, c.ErrorDetails)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-woken:
		case <-t.C:
		}
	}
}

// adopt lists the chains this engine goes on with: those a failed
// predecessor left RUNNING past their data, and the server uploads handed
// over once in place (Placed); each is claimed under this epoch first.
func (e *Engine) adopt(ctx context.Context, chains []fsm.Transfer) {
	slices.SortFunc(chains, func(a, b fsm.Transfer) int { return cmp.Compare(a.ID, b.ID) })
	for _, t := range chains {
		if t.Epoch != e.epoch {
			err := e.update(fsm.TransferChange{ID: t.ID, From: []string{fsm.StatusRunning}, Status: fsm.StatusRunning, Step: t.Step,
				NodeID: e.cfg.Node.ID(), ErrorCode: t.ErrorCode, ErrorDetails: t.ErrorDetails})
			if err != nil {
				e.log.Debug("chain not taken over", "id", t.ID, "err", err)
				continue
			}
			e.log.Info("resuming the chain of a transfer", "id", t.ID, "step", t.Step, "tasks", len(t.Tasks))
		}
		if cur, ok := e.current(t.ID); ok {
			e.startWorker(ctx, cur)
		}
	}
}
