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
)

// Command is one entry of the replicated log.
type Command struct {
	Op Op `json:"op"`
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
	Seed          *SeedArgs       `json:"seed,omitempty"`
	// Secrets is the body of OpSecretsKey and OpSecretsRotate.
	Secrets *SecretsArgs `json:"secrets,omitempty"`
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

// Encode serialises a command for raft.Apply.
func Encode(c Command) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", c.Op, err)
	}
	return b, nil
}

// Decode parses a log entry; it rejects unknown operations and missing bodies
// so that a corrupt entry is reported, never half-applied.
func Decode(data []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(data, &c); err != nil {
		return Command{}, fmt.Errorf("decode command: %w", err)
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
		if known, missing = decodeMFT(c); !known {
			return Command{}, fmt.Errorf("decode command: unknown op %q", c.Op)
		}
	}
	if missing {
		return Command{}, fmt.Errorf("decode command: %s without its body", c.Op)
	}
	return c, nil
}

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
