// Package fsm is the gateway's replicated state machine: every fact that must
// survive a failover (the lease, the node registry, users, the SSH host key) is
// changed only by applying a Command taken from the Raft log.
//
// The machine is pure: it does no I/O and reads no clock. Time enters only as
// the proposer's wall-clock stamp carried inside each command, so every node
// that applies the same log reaches byte-identical state.
package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Op names a kind of command; it is the first thing a decoder looks at.
type Op string

// The operations the machine understands.
const (
	OpLeaseAcquire Op = "lease.acquire"
	OpLeaseRenew   Op = "lease.renew"
	OpLeaseRelease Op = "lease.release"
	OpNodeRegister Op = "node.register"
	OpNodeStatus   Op = "node.status"
	OpNodeRemove   Op = "node.remove"
	OpInit         Op = "cluster.init"
	OpUserPut      Op = "user.put"
	OpUserDelete   Op = "user.delete"
	OpTokenPut     Op = "token.put"
	OpTokenDelete  Op = "token.delete"
	OpLicenseSet   Op = "license.set"
	OpSlots        Op = "license.slots"

	OpServerPut           Op = "server.put"
	OpServerDelete        Op = "server.delete"
	OpAccountPut          Op = "account.put"
	OpAccountDelete       Op = "account.delete"
	OpPartnerPut          Op = "partner.put"
	OpPartnerDelete       Op = "partner.delete"
	OpRemoteAccountPut    Op = "remoteaccount.put"
	OpRemoteAccountDelete Op = "remoteaccount.delete"
	OpRulePut             Op = "rule.put"
	OpRuleDelete          Op = "rule.delete"
	// OpSeed creates the default servers of a new cluster, once.
	OpSeed Op = "mft.seed"
	// OpTransferAdd records a new transfer; the proposer picks its ID.
	OpTransferAdd Op = "transfer.add"
	// OpTransferUpdate is the ACTIVE node's progress and state change.
	OpTransferUpdate Op = "transfer.update"
	// OpTransferAction is an operator's pause, resume, cancel or retry.
	OpTransferAction Op = "transfer.action"
	// OpTransferArchive marks finished transfers written to history.
	OpTransferArchive Op = "transfer.archive"
	// OpTransferTakeover marks the transfers an older epoch left RUNNING
	// as INTERRUPTED.
	OpTransferTakeover Op = "transfer.takeover"
	// OpTransferTask records the start or the end of one task of a
	// transfer's chain (version 3), fenced like checkpoints.
	OpTransferTask Op = "transfer.task"

	// Schedules (schedules.go, version 3): put and delete by operators;
	// run (a slot or file taken with its transfer), after (a poll's
	// delete or move done) and forget (runs of files gone) by the ACTIVE.
	OpSchedulePut    Op = "schedule.put"
	OpScheduleDelete Op = "schedule.delete"
	OpScheduleRun    Op = "schedule.run"
	OpScheduleAfter  Op = "schedule.after"
	OpScheduleForget Op = "schedule.forget"
)

// Version is the command schema version this binary writes and the newest
// it can apply. An entry of a newer version, or with an op this binary does
// not know, stops the machine (ErrUnsupported) rather than being skipped:
// skipping it would let nodes of different releases diverge.
//
//   - 1: the releases before versions; their entries carry no "v".
//   - 2: puts say whether they create or update (Command.Put), and a
//     user.put that changes the password revokes the user's tokens.
//   - 3: rule tasks, task progress, schedules: rules carry preTasks,
//     postTasks and errorTasks, transfer.task records each task's start
//     and end, transfer.add of a TRANSFER task's child is idempotent by
//     its key, a takeover leaves chains past their data RUNNING, and a
//     retry starts the chain over.
//   - 4: a lease acquire may declare its holder's grace (LeaseArgs.Grace):
//     how long after its lease the holder's effects (its service address)
//     may last; its successors wait that rather than their own guess.
const Version = 4

// testNextVersion, set only at link time (go build -ldflags "-X
// github.com/udmg/gateway/fsm.testNextVersion=3"), makes a binary that
// writes and applies that version instead of Version: the process tests'
// stand-in for the next release.
var testNextVersion string

// Current is the newest command version this binary applies and, in a
// cluster whose voters all apply it, writes.
func Current() int { return current }

// current is the version this binary writes and the newest it applies.
var current = func() int {
	if v, err := strconv.Atoi(testNextVersion); err == nil && v > Version {
		return v
	}
	return Version
}()

// PutMode says what a put of a server, account, partner, remote account,
// rule or user requires of the object's existence, decided in the machine
// so that concurrent writers through any node cannot both create one.
type PutMode string

// The put modes; "" creates or replaces (version-1 entries, internal writers).
const (
	// PutCreate refuses, with ErrExists, an object that exists already.
	PutCreate PutMode = "create"
	// PutUpdate refuses, with ErrUnknownObject (ErrUnknownUser for
	// users), an object that does not exist (deleted meanwhile).
	PutUpdate PutMode = "update"
)

// Command is one entry of the replicated log.
type Command struct {
	Op Op `json:"op"`
	// V is the schema version the proposer wrote (Encode sets it);
	// zero, in entries of older releases, is version 1.
	V int `json:"v,omitempty"`
	// Put is the create-or-update requirement of a put (version 2).
	Put PutMode `json:"put,omitempty"`
	// At is the proposer's wall clock when it proposed; it only stamps
	// records (last update, last active) and never decides safety.
	At time.Time `json:"at"`
	// Epoch, when non-zero, fences the command: it is refused unless it
	// equals the epoch of the current, unreleased lease. Changes that only
	// the ACTIVE node may make carry it.
	Epoch uint64 `json:"epoch,omitempty"`

	Lease  *LeaseArgs  `json:"lease,omitempty"`
	Node   *Node       `json:"node,omitempty"`
	Status *StatusArgs `json:"status,omitempty"`
	Init   *InitArgs   `json:"init,omitempty"`
	User   *User       `json:"user,omitempty"`
	Token  *Token      `json:"token,omitempty"`
	Name   string      `json:"name,omitempty"`
	// License is a signed license document, verified by the proposer.
	License []byte `json:"license,omitempty"`
	// Licensed lists the node IDs holding a license slot (OpSlots).
	Licensed []string `json:"licensed,omitempty"`
	// Sub is the second part of a two-part key: the login of an account
	// (Name is its server or partner), the direction of a rule.
	Sub string `json:"sub,omitempty"`

	Server        *Server         `json:"server,omitempty"`
	Account       *LocalAccount   `json:"account,omitempty"`
	Partner       *Partner        `json:"partner,omitempty"`
	RemoteAccount *RemoteAccount  `json:"remoteAccount,omitempty"`
	Rule          *Rule           `json:"rule,omitempty"`
	Transfer      *Transfer       `json:"transfer,omitempty"`
	Change        *TransferChange `json:"change,omitempty"`
	Task          *TaskChange     `json:"task,omitempty"`
	Key           *PGPKey         `json:"key,omitempty"`
	Secret        *Secret         `json:"secret,omitempty"`
	Seed          *SeedArgs       `json:"seed,omitempty"`
	// Secrets is the body of OpSecretsKey and OpSecretsRotate.
	Secrets *SecretsArgs `json:"secrets,omitempty"`
	// Schedule is the body of OpSchedulePut, ScheduleArgs that of the
	// ACTIVE's schedule commands.
	Schedule     *Schedule     `json:"schedule,omitempty"`
	ScheduleArgs *ScheduleArgs `json:"scheduleArgs,omitempty"`
}

// LeaseArgs is the body of the three lease commands.
type LeaseArgs struct {
	Holder string `json:"holder"`
	// Session distinguishes two runs of the same node: a restarted
	// process must not inherit the lease of its previous life.
	Session  string        `json:"session"`
	Epoch    uint64        `json:"epoch"`
	Duration time.Duration `json:"duration,omitempty"`
	// Clean, on a release, says that the holder completed its safe wait
	// for this epoch and has fenced: nobody can be serving, so the next
	// holder need not wait. A release without it cancels no wait.
	Clean bool `json:"clean,omitempty"`
	// Grace, on an acquire (version 4), is how long after its lease ends
	// on its own clock the holder's effects may still last: its service
	// address, until its kernel's fence or the address's lifetime ends.
	// Nil: not declared; a successor assumes its own guess (cluster
	// Config.UndeclaredGrace).
	Grace *time.Duration `json:"grace,omitempty"`
}

// StatusArgs reports a node's mode into the registry.
type StatusArgs struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// InitArgs carries what a brand-new cluster needs once: the first
// administrator and the SSH host key every ACTIVE node presents.
type InitArgs struct {
	Admin   User   `json:"admin"`
	HostKey []byte `json:"hostKey"`
}

// Encode serialises a command for raft.Apply, stamped with this binary's
// version (Version) unless it carries one already.
func Encode(c Command) ([]byte, error) {
	if c.V == 0 {
		c.V = current
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", c.Op, err)
	}
	return b, nil
}

// Decode parses a log entry; it rejects missing bodies so that a corrupt
// entry is reported, never half-applied, and answers ErrUnsupported for an
// entry of a newer version or an unknown op, which must not be skipped.
func Decode(data []byte) (Command, error) {
	newer := func(op Op, v int) error {
		return fmt.Errorf("op %q version %d is newer than this binary understands (%d): %w", op, v, current, ErrUnsupported)
	}
	var c Command
	if err := json.Unmarshal(data, &c); err != nil {
		// A newer release may have reshaped a body this binary cannot
		// parse: its op and version say so.
		var head struct {
			Op Op  `json:"op"`
			V  int `json:"v"`
		}
		if json.Unmarshal(data, &head) == nil && head.V > current {
			return Command{}, newer(head.Op, head.V)
		}
		return Command{}, fmt.Errorf("decode command: %w", err)
	}
	if c.V > current {
		return Command{}, newer(c.Op, c.V)
	}
	if c.V < 0 {
		return Command{}, fmt.Errorf("decode command: %s with version %d", c.Op, c.V)
	}
	switch c.Put {
	case "", PutCreate, PutUpdate:
	default:
		return Command{}, fmt.Errorf("decode command: %s with unknown put mode %q", c.Op, c.Put)
	}
	var missing bool
	switch c.Op {
	case OpLeaseAcquire, OpLeaseRenew, OpLeaseRelease:
		missing = c.Lease == nil || c.Lease.Holder == ""
	case OpNodeRegister:
		missing = c.Node == nil || c.Node.ID == ""
	case OpNodeStatus:
		missing = c.Status == nil || c.Status.ID == ""
	case OpInit:
		missing = c.Init == nil || c.Init.Admin.Name == ""
	case OpUserPut:
		missing = c.User == nil || c.User.Name == ""
	case OpTokenPut:
		missing = c.Token == nil || c.Token.Hash == "" || c.Token.User == ""
	case OpLicenseSet:
		missing = len(c.License) == 0
	case OpSlots:
		missing = false
	case OpSecretsKey, OpSecretsRotate:
		missing = decodeSecrets(c)
	case OpNodeRemove, OpUserDelete, OpTokenDelete:
		missing = c.Name == ""
	default:
		var known bool
		if known, missing = decodeSchedule(c); !known {
			known, missing = decodeMFT(c)
		}
		if !known {
			return Command{}, fmt.Errorf("op %q (version %d) is unknown to this binary (version %d): %w", c.Op, c.version(), current, ErrUnsupported)
		}
	}
	if missing {
		return Command{}, fmt.Errorf("decode command: %s without its body", c.Op)
	}
	return c, nil
}

// version is the entry's schema version, 1 for entries written before
// commands carried one.
func (c Command) version() int { return max(c.V, 1) }

// Errors a command can be refused with. They are results, not failures of
// the machine: the state is unchanged when one is returned.
var (
	ErrStaleEpoch  = errors.New("stale lease epoch")
	ErrNotHolder   = errors.New("not the lease holder")
	ErrReleased    = errors.New("lease already released")
	ErrUnknownNode = errors.New("unknown node")
	ErrInitialized = errors.New("cluster already initialised")
	ErrUnknownUser = errors.New("unknown user")
)

// ErrUnsupported marks a log entry this binary cannot apply faithfully (a
// newer version, an unknown op). Unlike the errors above it is fatal: the
// machine applies nothing after it, and the node must stop so that an
// upgraded binary applies the entry instead of the cluster diverging.
var ErrUnsupported = errors.New("upgrade this node")
