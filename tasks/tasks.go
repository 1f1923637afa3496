// Package tasks runs the steps a rule chains around a transfer (ARCHITECTURE.md,
// "Rules and tasks"): COPY, MOVE, RENAME, DELETE, TRANSFER, ENCRYPT, DECRYPT,
// SIGN, VERIFY, ARCHIVE, EXTRACT, CHECKSUM, CHECK, EXEC and WEBHOOK, with
// Waarp Gateway's argument names and substitution variables.
//
// The package knows nothing of Raft: the chain runner (package transfer)
// commits each task's start and end and, after a failover, calls Run again
// for the first unfinished task. So every task is idempotent: running it a
// second time after a crash at any instant does no harm and ends in the same
// place:
//   - every file a task writes goes through a temporary name in the same
//     directory (".NAME.<transfer ID>.tmp", overwritten by a rerun), fsync,
//     rename and an fsync of the directory, so a reader sees the old file or
//     the whole new one, never a part;
//   - MOVE and RENAME recognise "already done" (source gone, destination
//     present); DELETE of a missing file is done;
//   - a TRANSFER names its child transfer by the parent and the task
//     (Facts.TaskKey), so a rerun finds the child instead of adding one;
//   - EXEC and WEBHOOK act outside the gateway and are at-least-once: a
//     crash after the program ran or the hook was answered, before the
//     task's end was committed, runs them again. WEBHOOK sends an
//     Idempotency-Key header (the same on every rerun) for receivers that
//     deduplicate; EXEC's program gets UDMG_TASK_KEY for the same purpose.
//
// Task types and their arguments (names are case-insensitive, stored upper
// case; a path is relative to GatewayHome, or absolute inside it):
//
//	COPY     {"path": dir}                   copy the file into dir (same name)
//	MOVE     {"path": dir}                   move the file into dir; the chain follows it
//	RENAME   {"path": file}                  rename the file to path; the chain follows it
//	DELETE   {}                              delete the file
//	CHECK    {"namePattern": glob, "nameRegexp": re, "minSize": n, "maxSize": n}
//	                                         refuse the file unless its base name matches
//	                                         and its size (on disk, or the announced
//	                                         Filesize before it exists) is within bounds
//	CHECKSUM {"path": sidecar}               write "<sha256>  <name>" to path (default FILE.sha256)
//	CHECKSUM {"expect": hex} or {"sidecar": path}
//	                                         refuse the file unless its sha256 matches
//	ARCHIVE  {"path": archive, "file": f, "format": "zip"|"tar.gz"}
//	                                         write an archive holding file f (default the
//	                                         chain's file); format from the extension
//	EXTRACT  {"path": dir, "format": ..., "maxSize": bytes}
//	                                         unpack the chain's file into dir (default its
//	                                         directory); entries with "..", absolute names
//	                                         or links, or more than maxSize bytes in all,
//	                                         are refused before anything is written
//	ENCRYPT  {"key": name|[names], "path": out, "armor": bool, "signKey": name}
//	                                         encrypt to the keys (default out FILE.pgp); the
//	                                         chain follows out
//	DECRYPT  {"key": name, "path": out, "verifyKey": name}
//	                                         decrypt (default out FILE without .pgp/.gpg/.asc);
//	                                         with verifyKey, refuse unless signed by it
//	SIGN     {"key": name, "mode": "detached"|"inline", "armor": bool, "path": out}
//	                                         detached: FILE.sig beside the file; inline: a
//	                                         signed message (default FILE.gpg) the chain follows
//	VERIFY   {"key": name|[names], "signature": path, "mode": "detached"|"inline", "path": out}
//	                                         detached: check FILE against signature (default
//	                                         FILE.sig, armored or binary); inline: check the
//	                                         signed message and write its content to out
//	EXEC     {"path": program, "args": string|[strings], "delay": ms, "timeout": duration}
//	TRANSFER {"file": f, "to": partner, "as": account, "rule": rule}
//	WEBHOOK  {"url": url, "headers": {name: value}, "attempts": n, "timeout": duration}
//
// Variables (#TRUEFULLPATH#, #TRUEFILENAME#, #ORIGINALFILENAME#, #FILESIZE#,
// #RULE#, #PARTNER#, #ACCOUNT#, #DATE#, #HOUR#, #REMOTEHOST#, #TRANSFERID#,
// #ERRORMSG#, #ERRORCODE#) are replaced in every string argument when the
// task runs; an unknown #NAME# (upper-case letters and underscores) is
// refused by Validate, so a typo never reaches a file name. A path that a
// variable makes escape GatewayHome is refused like any other.
//
// #SECRET:name# in WEBHOOK's headers or EXEC's args is the value of a
// stored secret (Env.Secret, sealed), opened when the task runs: the rule
// holds the reference only, and the task's output and error show the
// reference wherever the value appears (secrets.go). Anywhere else it is
// refused by Validate.
//
// Keys are the names of OpenPGP keys stored sealed (Env.Keys); a private
// key protected by a passphrase is opened once, at its import (Import),
// and stored sealed without that protection.
// EXEC's program may lie outside GatewayHome (it is run, not read or
// written); it runs in GatewayHome.
package tasks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"
)

// Task is one step of a rule's preTasks, postTasks or errorTasks, as the API
// and the replicated state carry it.
type Task struct {
	Type string         `json:"type"`
	Args map[string]any `json:"args,omitempty"`
}

// Facts are what a task knows of its transfer: the substitution variables
// (see vars.go) and EXEC's environment and WEBHOOK's body come from here.
type Facts struct {
	TransferID uint64
	Rule       string
	Send       bool   // the rule's direction
	IsServer   bool   // a partner's session on our servers
	Partner    string // partner or local server
	Account    string
	// Path is the file the chain works on now, relative to GatewayHome
	// (#TRUEFULLPATH# is it made absolute); a task that moves or
	// transforms the file returns the new one in Result.Path.
	Path string
	// Name is the name the chain's file goes by when COPY, MOVE or
	// TRANSFER puts it elsewhere under its own name; "" : the base of
	// Path. A refused upload's staged file (".udmg-staging.…") goes by
	// the name the partner gave it.
	Name string
	// NoFile says the transfer never had a file (a receive refused by a
	// pre-task before any data): the tasks on the chain's file are
	// skipped, recorded DONE with the reason; EXEC, WEBHOOK and those
	// given another file run.
	NoFile       bool
	OriginalName string // the name the transfer started with
	// Filesize is the announced size, -1 when unknown (CHECK uses it
	// before the file exists, in a receive's pre-tasks).
	Filesize   int64
	RemoteHost string
	ErrorCode  string // error-tasks only
	ErrorMsg   string // error-tasks only
	NodeID     string
	Now        time.Time // #DATE# and #HOUR#: fixed when the task starts
	// TaskKey names the task's place in the chain, the same on every rerun
	// (for example "post/2"); the runner fills it. TRANSFER derives its
	// child's key from TransferID and TaskKey, WEBHOOK its Idempotency-Key.
	TaskKey string
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
	// Secret returns the value of the named secret (#SECRET:name#),
	// opened from the sealed store; nil: references fail.
	Secret func(name string) (string, error)
	// Dial is the dialer for WEBHOOK (SourceAddress); nil: the default.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Result is what a finished task reports.
type Result struct {
	Path   string // the chain's file from now on ("" : unchanged)
	Output string // captured output (EXEC), or a short summary; bounded
}

// ErrNotBuilt marked a task type not written yet; every type is built now
// and nothing returns it (kept for callers of the first contract).
var ErrNotBuilt = errors.New("task type not built yet")

// ErrUnknownType marks a task whose type is none of the package's.
var ErrUnknownType = errors.New("unknown task type")

// kind is the JSON kind an argument must have.
type kind int

const (
	kString   kind = iota
	kStrings       // a string or a list of strings
	kNumber        // a non-negative number
	kBool          // true or false
	kHeaders       // an object of strings
	kDuration      // a Go duration ("30s")
	kGlob          // a path.Match pattern
	kRegexp        // a regular expression
)

// arg declares one argument of a task type.
type arg struct {
	name     string
	kind     kind
	required bool
	oneOf    []string // the values a string may take (lower case)
	secrets  bool     // may hold #SECRET:name# references (secrets.go)
}

// kindSpec pairs a type's arguments with its work.
type kindSpec struct {
	args []arg
	// check adds the type's own rules on the arguments (nil: none).
	check func(a args) error
	run   func(ctx context.Context, c *call) (Result, error)
}

// specs is filled in by the files of the task families (init order does
// not matter: nothing reads it before main).
var specs = map[string]kindSpec{}

// Types lists the known task types, sorted (API documentation, UI menus).
func Types() []string {
	out := make([]string, 0, len(specs))
	for t := range specs {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Canonical returns the stored spelling of a type name (upper case).
func Canonical(typ string) string {
	return strings.ToUpper(strings.TrimSpace(typ))
}

// Validate checks a task as the API receives it: known type, required
// arguments present and of the right kind, no unknown argument (a typo
// would silently do nothing), patterns that compile, known variables. Its
// error names the argument; callers add the rule and the task's position.
func Validate(t Task) error {
	typ := Canonical(t.Type)
	s, ok := specs[typ]
	if !ok {
		return fmt.Errorf("%w %q (known: %s)", ErrUnknownType, t.Type, strings.Join(Types(), ", "))
	}
	a := args(t.Args)
	known := map[string]bool{}
	for _, d := range s.args {
		known[d.name] = true
		v, present := a[d.name]
		if !present || v == nil {
			if d.required {
				return fmt.Errorf("%s: argument %q is required", typ, d.name)
			}
			continue
		}
		if err := checkKind(d, v); err != nil {
			return fmt.Errorf("%s: argument %q: %w", typ, d.name, err)
		}
		if err := checkVars(v); err != nil {
			return fmt.Errorf("%s: argument %q: %w", typ, d.name, err)
		}
		if err := checkSecretPlace(d, v); err != nil {
			return fmt.Errorf("%s: argument %q: %w", typ, d.name, err)
		}
	}
	for name := range a {
		if !known[name] {
			return fmt.Errorf("%s: unknown argument %q (known: %s)", typ, name, argNames(s.args))
		}
	}
	if s.check != nil {
		if err := s.check(a); err != nil {
			return fmt.Errorf("%s: %w", typ, err)
		}
	}
	return nil
}

func argNames(d []arg) string {
	if len(d) == 0 {
		return "none"
	}
	names := make([]string, len(d))
	for i, a := range d {
		names[i] = a.name
	}
	return strings.Join(names, ", ")
}

// Run performs one task on the chain's file. It is safe to call again for
// the same task after a crash at any point (see the package comment). The
// task is validated first, then its variables are substituted.
func Run(ctx context.Context, t Task, f Facts, env Env) (Result, error) {
	if err := Validate(t); err != nil {
		return Result{}, err
	}
	typ := Canonical(t.Type)
	root, err := os.OpenRoot(env.Home)
	if err != nil {
		return Result{}, fmt.Errorf("%s: GatewayHome: %w", typ, err)
	}
	defer root.Close()
	c := &call{typ: typ, args: substitute(t.Args, f, env.Home), facts: f, env: env, root: root}
	if f.NoFile && usesChainFile(typ, c.args) {
		return Result{Output: typ + " skipped: the transfer has no file (refused before any data)"}, nil
	}
	redact, err := c.openSecrets()
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", typ, err)
	}
	r, err := specs[typ].run(ctx, c)
	r.Output = redact(r.Output)
	if err != nil {
		err = fmt.Errorf("%s: %w", typ, err)
		return r, redactedError{msg: redact(err.Error()), err: err}
	}
	return r, nil
}

// usesChainFile reports whether a task of type typ works on the chain's
// file: every type but EXEC and WEBHOOK, unless given a "file" of its own
// (ARCHIVE, TRANSFER).
func usesChainFile(typ string, a args) bool {
	switch typ {
	case "EXEC", "WEBHOOK":
		return false
	}
	return !a.has("file")
}

// call is one run of a task: its substituted arguments and what it may touch.
type call struct {
	typ   string
	args  args
	facts Facts
	env   Env
	root  *os.Root // GatewayHome: no path through it leaves Home
}
