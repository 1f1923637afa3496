// Package tasks runs the steps a rule chains around a transfer (ARCHITECTURE.md,
// "Rules and tasks"): COPY, MOVE, RENAME, DELETE, TRANSFER, ENCRYPT, DECRYPT,
// SIGN, VERIFY, ARCHIVE, EXTRACT, CHECKSUM, EXEC and WEBHOOK, with Waarp
// Gateway's argument names and substitution variables.
//
// The package knows nothing of Raft: the chain runner (package transfer)
// commits each task's start and end and, after a failover, calls Run again
// for the first unfinished task. So every task is idempotent: running it a
// second time after a crash at any instant does no harm and ends in the same
// place (a MOVE already done on disk is recognised, an ENCRYPT rewrites its
// output through a temporary name, a TRANSFER names its child transfer by
// the parent and the task, so a rerun finds the child instead of adding one).
package tasks

import (
	"context"
	"errors"
	"net"
	"time"
)

// Task is one step of a rule's preTasks, postTasks or errorTasks, as the API
// and the replicated state carry it.
type Task struct {
	Type string         `json:"type"`
	Args map[string]any `json:"args,omitempty"`
}

// Facts are what a task knows of its transfer: the substitution variables
// (#TRUEFULLPATH#, #TRUEFILENAME#, #ORIGINALFILENAME#, #FILESIZE#, #RULE#,
// #PARTNER#, #ACCOUNT#, #DATE#, #HOUR#, #REMOTEHOST#, #TRANSFERID#,
// #ERRORMSG#) and EXEC's environment come from here.
type Facts struct {
	TransferID uint64
	Rule       string
	Send       bool   // the rule's direction
	IsServer   bool   // a partner's session on our servers
	Partner    string // partner or local server
	Account    string
	// Path is the file the chain works on now, relative to GatewayHome
	// (#TRUEFULLPATH#); a task that moves or transforms the file returns
	// the new one in Result.Path.
	Path         string
	OriginalName string // the name the transfer started with
	Filesize     int64
	RemoteHost   string
	ErrorCode    string // error-tasks only
	ErrorMsg     string // error-tasks only
	NodeID       string
	Now          time.Time // #DATE# and #HOUR#: fixed when the task starts
}

// Child is the transfer a TRANSFER task asks for.
type Child struct {
	Key     string // parent ID and task position: the same on every rerun
	Rule    string
	Partner string
	Account string // remote account
	File    string // relative to GatewayHome
	Remote  string // remote path
}

// Env is what tasks may touch, given by the ACTIVE node.
type Env struct {
	// Home is GatewayHome; every path a task touches must stay under it and
	// out of Guard's protected paths (DataDir, key files).
	Home string
	// Guard refuses protected paths (a *confine.Guard).
	Guard interface {
		File(path string) error
		Tree(path string) error
	}
	// Keys returns the armored OpenPGP key (public or private) stored under
	// name, opened from the sealed secrets.
	Keys func(name string) (string, error)
	// StartChild adds the child transfer if none has the key yet and returns
	// its ID either way; Wait blocks until it ended and reports its error.
	StartChild func(ctx context.Context, c Child) (uint64, error)
	WaitChild  func(ctx context.Context, id uint64) error
	// Dial is the dialer for WEBHOOK (SourceAddress); nil: the default.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Result is what a finished task reports.
type Result struct {
	Path   string // the chain's file from now on ("" : unchanged)
	Output string // captured output (EXEC), or a short summary; bounded
}

// ErrNotBuilt marks a task type whose implementation is not written yet.
var ErrNotBuilt = errors.New("task type not built yet")

// Validate checks a task as the API receives it: known type, required
// arguments present and of the right kind, patterns that compile. Its error
// names the argument; callers add the rule and the task's position.
func Validate(t Task) error {
	return ErrNotBuilt
}

// Run performs one task on the chain's file. It is safe to call again for
// the same task after a crash at any point (see the package comment).
func Run(ctx context.Context, t Task, f Facts, env Env) (Result, error) {
	return Result{}, ErrNotBuilt
}
