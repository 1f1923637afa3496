package fsm

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/udmg/gateway/tasks"
)

// The MFT objects, after Waarp Gateway's: local servers and their accounts,
// partners and their remote accounts, rules, and transfers. Secrets arrive
// already protected by the proposer (bcrypt hashes, AES-GCM sealed text):
// the machine stores them as given.

// Protocols of servers and partners.
const (
	ProtoSFTP = "sftp"
	ProtoFTP  = "ftp"
)

// Transfer statuses (ARCHITECTURE "Transfers").
const (
	StatusPlanned     = "PLANNED"
	StatusRunning     = "RUNNING"
	StatusPaused      = "PAUSED"
	StatusInterrupted = "INTERRUPTED"
	StatusError       = "ERROR"
	StatusDone        = "DONE"
	StatusCancelled   = "CANCELLED"
)

// Transfer steps, as Waarp Gateway names them.
const (
	StepNone         = "NONE"
	StepSetup        = "SETUP"
	StepData         = "DATA"
	StepFinalization = "FINALIZATION"
	StepError        = "ERROR TASKS"
	// StepPreTasks and StepPostTasks run the rule's pre- and post-tasks
	// (version 3). A transfer RUNNING in StepPostTasks has all its data
	// in place; one RUNNING in StepError has failed and runs its
	// error-tasks. A failover leaves both RUNNING for the next ACTIVE
	// node to go on with the chain (TaskRun says where).
	StepPreTasks  = "PRE TASKS"
	StepPostTasks = "POST TASKS"
)

// Task phases, the lists of a rule (TaskRun.Phase).
const (
	PhasePre   = "pre"
	PhasePost  = "post"
	PhaseError = "error"
)

// Task states (TaskRun.State).
const (
	TaskRunning = "RUNNING"
	TaskDone    = "DONE"
	TaskError   = "ERROR"
)

// MaxTaskOutput bounds the output a TaskRun keeps (bytes).
const MaxTaskOutput = 4096

// Window bounds of the live transfer table: finished transfers already in
// the history table are kept only for the most recent RecentWindow; those
// not yet archived (database down) at most MaxUnarchived, oldest dropped.
const (
	RecentWindow  = 100
	MaxUnarchived = 10000
)

// Server is a local SFTP or FTP server opened by the ACTIVE node.
type Server struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Port     int    `json:"port"`
	// Root is the directory, relative to GatewayHome, holding the homes
	// of this server's accounts (Root/<login>); "" is GatewayHome itself.
	Root       string `json:"root,omitempty"`
	PassiveMin int    `json:"passiveMin,omitempty"`
	PassiveMax int    `json:"passiveMax,omitempty"`
	PublicHost string `json:"publicHost,omitempty"`
	// TLS offers explicit FTPS (AUTH TLS) with TLSCert and the sealed
	// TLSKey (PEM).
	TLS     bool   `json:"tls,omitempty"`
	TLSCert string `json:"tlsCert,omitempty"`
	TLSKey  string `json:"tlsKey,omitempty"`
	// TLSRequired refuses logins and transfers in clear (with TLS).
	TLSRequired bool `json:"tlsRequired,omitempty"`
	Enabled     bool `json:"enabled"`
}

// LocalAccount is a login on a local server.
type LocalAccount struct {
	Server       string `json:"server"`
	Login        string `json:"login"`
	PasswordHash []byte `json:"passwordHash,omitempty"`
	// PublicKeys are authorized_keys lines accepted for SFTP login.
	PublicKeys []string `json:"publicKeys,omitempty"`
}

// Partner is a remote SFTP or FTP server the gateway connects to.
type Partner struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Address  string `json:"address"`
	// HostKey is the partner's SSH host key (authorized_keys form) that
	// it must present (required for sftp partners).
	HostKey string `json:"hostKey,omitempty"`
	// TLS makes FTP sessions use explicit TLS (FTPS, data channel too).
	TLS bool `json:"tls,omitempty"`
	// TLSCert (PEM) is the certificate an FTPS partner must present, or
	// the CA it must chain to; empty: the system's CAs and the host name.
	TLSCert string `json:"tlsCert,omitempty"`
}

// RemoteAccount is the gateway's login at a partner; Password and
// PrivateKey are sealed with the cluster's AES passphrase.
type RemoteAccount struct {
	Partner    string `json:"partner"`
	Login      string `json:"login"`
	Password   string `json:"password,omitempty"`
	PrivateKey string `json:"privateKey,omitempty"`
}

// Rule says which way files go and where: Path is the remote directory of
// client-mode transfers and, for server-mode ones, the directory (in the
// account's home) whose files it covers; LocalDir is where client-mode
// transfers keep their files, relative to GatewayHome.
type Rule struct {
	Name     string `json:"name"`
	Send     bool   `json:"send"`
	Path     string `json:"path"`
	LocalDir string `json:"localDir,omitempty"`
	// PreTasks, PostTasks and ErrorTasks run around every transfer of
	// the rule on the ACTIVE node (version 3; ARCHITECTURE "Rules and
	// tasks"). Never changed in place: a put replaces them.
	PreTasks   []tasks.Task `json:"preTasks,omitempty"`
	PostTasks  []tasks.Task `json:"postTasks,omitempty"`
	ErrorTasks []tasks.Task `json:"errorTasks,omitempty"`
}

// HasTasks reports whether the rule chains any task.
func (r Rule) HasTasks() bool {
	return len(r.PreTasks)+len(r.PostTasks)+len(r.ErrorTasks) > 0
}

// Tasks is the rule's list of a phase.
func (r Rule) Tasks(phase string) []tasks.Task {
	switch phase {
	case PhasePre:
		return r.PreTasks
	case PhasePost:
		return r.PostTasks
	case PhaseError:
		return r.ErrorTasks
	}
	return nil
}

// Direction is "send" or "receive".
func (r Rule) Direction() string { return direction(r.Send) }

func direction(send bool) string {
	if send {
		return "send"
	}
	return "receive"
}

// Transfer is one file moved, by a client of our servers (IsServer) or by
// the engine to or from a partner.
type Transfer struct {
	ID         uint64 `json:"id"`
	IsServer   bool   `json:"isServer"`
	IsSend     bool   `json:"isSend"`
	Protocol   string `json:"protocol"`
	Rule       string `json:"rule,omitempty"`
	Agent      string `json:"agent"` // local server or partner
	Account    string `json:"account"`
	LocalPath  string `json:"localPath"` // relative to GatewayHome
	RemotePath string `json:"remotePath"`
	Filesize   int64  `json:"filesize"` // -1 while unknown
	// Progress is the last committed checkpoint: bytes known to be at
	// the destination.
	Progress     int64     `json:"progress"`
	Status       string    `json:"status"`
	Step         string    `json:"step"`
	ErrorCode    string    `json:"errorCode,omitempty"`
	ErrorDetails string    `json:"errorDetails,omitempty"`
	Start        time.Time `json:"start"`
	Stop         time.Time `json:"stop,omitzero"`
	// NodeID and Epoch are the node and lease epoch that last ran it; a
	// RUNNING transfer of an older epoch was cut by a failover.
	NodeID string `json:"nodeId,omitempty"`
	Epoch  uint64 `json:"epoch,omitempty"`
	// Retries: Attempts started so far (the running one included; a
	// resumed pause or failover goes on with its attempt), at most
	// MaxAttempts; the n-th retry waits RetryDelay·RetryFactor^(n-1), from
	// NextRetry on. A PLANNED transfer with an ErrorCode waits for its next
	// attempt at NextRetry.
	Attempts    int           `json:"attempts"`
	MaxAttempts int           `json:"maxAttempts"`
	RetryDelay  time.Duration `json:"retryDelay"`
	RetryFactor float64       `json:"retryFactor"`
	NextRetry   time.Time     `json:"nextRetry,omitzero"`
	Checkpoints int           `json:"checkpoints"`
	// Archived is set once the history table holds the finished transfer.
	Archived bool `json:"archived,omitempty"`
	// Tasks is the chain of the rule's tasks run so far, in the order
	// they started (version 3): one entry per phase and position.
	Tasks []TaskRun `json:"tasks,omitempty"`
	// Parent is the transfer whose TRANSFER task added this one, and
	// ChildKey that task's key: a second add with the same key adds
	// nothing (version 3).
	Parent   uint64 `json:"parent,omitempty"`
	ChildKey string `json:"childKey,omitempty"`
}

// TaskRun is one task of a transfer's chain as far as it got: its start
// and its end are each committed, so that the next ACTIVE node resumes at
// the first task not DONE (one RUNNING is run again).
type TaskRun struct {
	Phase  string    `json:"phase"`
	Index  int       `json:"index"`
	Type   string    `json:"type"`
	State  string    `json:"state"`
	Start  time.Time `json:"start"`
	Stop   time.Time `json:"stop,omitzero"`
	NodeID string    `json:"nodeId,omitempty"`
	// Runs counts the starts: more than one when a failover cut it.
	Runs   int    `json:"runs"`
	Error  string `json:"error,omitempty"`
	Output string `json:"output,omitempty"`
	// Path is the chain's file after the task, when the task moved or
	// made it (relative to GatewayHome).
	Path string `json:"path,omitempty"`
}

// TaskRun returns the entry of the task at index of phase.
func (t Transfer) TaskRun(phase string, index int) (TaskRun, bool) {
	for _, r := range t.Tasks {
		if r.Phase == phase && r.Index == index {
			return r, true
		}
	}
	return TaskRun{}, false
}

// ChainPath is the file the chain works on now: the last path a DONE task
// gave, else LocalPath.
func (t Transfer) ChainPath() string {
	p := t.LocalPath
	for _, r := range t.Tasks {
		if r.State == TaskDone && r.Path != "" {
			p = r.Path
		}
	}
	return p
}

// InTasks reports whether the transfer runs its post- or error-tasks: its
// data phase is over, and a failover hands it over RUNNING.
func (t Transfer) InTasks() bool {
	return t.Status == StatusRunning && (t.Step == StepPostTasks || t.Step == StepError)
}

// TaskChange is the body of OpTransferTask: a task's start (State
// TaskRunning) or its end (TaskDone, TaskError).
type TaskChange struct {
	ID     uint64 `json:"id"`
	Phase  string `json:"phase"`
	Index  int    `json:"index"`
	Type   string `json:"type,omitempty"`
	State  string `json:"state"`
	NodeID string `json:"nodeId,omitempty"`
	Error  string `json:"error,omitempty"`
	Output string `json:"output,omitempty"`
	Path   string `json:"path,omitempty"`
}

// CutBefore reports whether the transfer was left RUNNING by a holder of
// a lease epoch older than epoch: a failover cut it.
func (t Transfer) CutBefore(epoch uint64) bool {
	return t.Status == StatusRunning && t.Epoch < epoch
}

// Finished reports whether the transfer reached an end the engine will not
// leave by itself (an operator may still retry ERROR and CANCELLED).
func (t Transfer) Finished() bool {
	switch t.Status {
	case StatusDone, StatusCancelled, StatusError:
		return true
	case StatusInterrupted:
		return t.IsServer // the client resumes with a new transfer
	}
	return false
}

// TransferChange is the body of the transfer commands. From lists the
// statuses a status change applies to (compare-and-set); a change without
// Status only records progress and needs the transfer to be run under the
// command's epoch.
type TransferChange struct {
	ID           uint64    `json:"id"`
	From         []string  `json:"from,omitempty"`
	Status       string    `json:"status,omitempty"`
	Step         string    `json:"step,omitempty"`
	Progress     *int64    `json:"progress,omitempty"`
	Filesize     *int64    `json:"filesize,omitempty"`
	ErrorCode    string    `json:"errorCode,omitempty"`
	ErrorDetails string    `json:"errorDetails,omitempty"`
	NextRetry    time.Time `json:"nextRetry,omitzero"`
	Attempt      bool      `json:"attempt,omitempty"` // counts one more attempt
	NodeID       string    `json:"nodeId,omitempty"`
	// Action is pause, resume, cancel or retry (OpTransferAction).
	Action string `json:"action,omitempty"`
	// IDs lists the transfers archived (OpTransferArchive).
	IDs []uint64 `json:"ids,omitempty"`
}

// SeedArgs are the default servers and accounts a new cluster starts with.
type SeedArgs struct {
	Servers  []Server       `json:"servers"`
	Accounts []LocalAccount `json:"accounts"`
}

// MFT errors; like the others they leave the state unchanged.
var (
	ErrUnknownObject = errors.New("no such object")
	ErrExists        = errors.New("already exists")
	ErrInUse         = errors.New("in use")
	ErrTransferState = errors.New("transfer not in a state that allows this")
)

// AccountKey and RuleKey key the maps of accounts and rules.
func AccountKey(parent, login string) string { return parent + "/" + login }
func RuleKey(name string, send bool) string  { return name + "/" + direction(send) }

func decodeMFT(c Command) (known, missing bool) {
	switch c.Op {
	case OpServerPut:
		return true, c.Server == nil || c.Server.Name == ""
	case OpAccountPut:
		return true, c.Account == nil || c.Account.Server == "" || c.Account.Login == ""
	case OpPartnerPut:
		return true, c.Partner == nil || c.Partner.Name == ""
	case OpRemoteAccountPut:
		return true, c.RemoteAccount == nil || c.RemoteAccount.Partner == "" || c.RemoteAccount.Login == ""
	case OpRulePut:
		return true, c.Rule == nil || c.Rule.Name == ""
	case OpServerDelete, OpPartnerDelete:
		return true, c.Name == ""
	case OpAccountDelete, OpRemoteAccountDelete, OpRuleDelete:
		return true, c.Name == "" || c.Sub == ""
	case OpTransferAdd:
		return true, c.Transfer == nil || c.Transfer.ID == 0
	case OpTransferUpdate:
		// Only the ACTIVE node runs transfers: its changes are fenced.
		return true, c.Change == nil || c.Change.ID == 0 || c.Epoch == 0
	case OpTransferAction:
		return true, c.Change == nil || c.Change.ID == 0 || c.Change.Action == ""
	case OpTransferArchive:
		return true, c.Change == nil || c.Epoch == 0
	case OpKeyPut:
		return true, c.Key == nil || c.Key.Name == "" || c.Key.Armored == ""
	case OpKeyDelete, OpSecretDelete:
		return true, c.Name == ""
	case OpSecretPut:
		return true, c.Secret == nil || c.Secret.Name == "" || c.Secret.Value == ""
	case OpTransferTask:
		// Tasks run on the ACTIVE node only: fenced like checkpoints.
		return true, c.Task == nil || c.Task.ID == 0 || c.Epoch == 0
	case OpTransferTakeover, OpSeed:
		return true, c.Epoch == 0 || (c.Op == OpSeed && c.Seed == nil)
	}
	return false, false
}

func (m *Machine) applyMFT(c Command) error {
	s := &m.s
	switch c.Op {
	case OpServerPut:
		srv := *c.Server
		if err := checkPut(c.Put, s.Servers, srv.Name, fmt.Sprintf("server %q", srv.Name)); err != nil {
			return err
		}
		for _, o := range s.Servers {
			if o.Name != srv.Name && o.Port == srv.Port {
				return fmt.Errorf("server %s: port %d is used by server %s: %w", srv.Name, srv.Port, o.Name, ErrInUse)
			}
		}
		s.Servers[srv.Name] = srv
	case OpServerDelete:
		return deleteCascade(s.Servers, s.Accounts, c.Name, "server", func(a LocalAccount) string { return a.Server })
	case OpAccountPut:
		a := *c.Account
		if _, ok := s.Servers[a.Server]; !ok {
			return fmt.Errorf("account %s: server %s: %w", a.Login, a.Server, ErrUnknownObject)
		}
		if err := checkPut(c.Put, s.Accounts, AccountKey(a.Server, a.Login), fmt.Sprintf("account %q on server %q", a.Login, a.Server)); err != nil {
			return err
		}
		a.PublicKeys = slices.Clone(a.PublicKeys)
		s.Accounts[AccountKey(a.Server, a.Login)] = a
	case OpAccountDelete:
		return deleteKey(s.Accounts, AccountKey(c.Name, c.Sub), "account")
	case OpPartnerPut:
		if err := checkPut(c.Put, s.Partners, c.Partner.Name, fmt.Sprintf("partner %q", c.Partner.Name)); err != nil {
			return err
		}
		s.Partners[c.Partner.Name] = *c.Partner
	case OpPartnerDelete:
		return deleteCascade(s.Partners, s.RemoteAccounts, c.Name, "partner", func(a RemoteAccount) string { return a.Partner })
	case OpRemoteAccountPut:
		a := *c.RemoteAccount
		if _, ok := s.Partners[a.Partner]; !ok {
			return fmt.Errorf("remote account %s: partner %s: %w", a.Login, a.Partner, ErrUnknownObject)
		}
		if err := checkPut(c.Put, s.RemoteAccounts, AccountKey(a.Partner, a.Login), fmt.Sprintf("remote account %q at partner %q", a.Login, a.Partner)); err != nil {
			return err
		}
		s.RemoteAccounts[AccountKey(a.Partner, a.Login)] = a
	case OpRemoteAccountDelete:
		return deleteKey(s.RemoteAccounts, AccountKey(c.Name, c.Sub), "remote account")
	case OpRulePut:
		key := RuleKey(c.Rule.Name, c.Rule.Send)
		if err := checkPut(c.Put, s.Rules, key, fmt.Sprintf("%s rule %q", c.Rule.Direction(), c.Rule.Name)); err != nil {
			return err
		}
		s.Rules[key] = *c.Rule
	case OpRuleDelete:
		return deleteKey(s.Rules, c.Name+"/"+c.Sub, "rule")
	case OpKeyPut:
		if err := checkPut(c.Put, s.Keys, c.Key.Name, fmt.Sprintf("key %q", c.Key.Name)); err != nil {
			return err
		}
		s.Keys[c.Key.Name] = *c.Key
	case OpKeyDelete:
		return deleteKey(s.Keys, c.Name, "key")
	case OpSecretPut:
		if err := checkPut(c.Put, s.SecretValues, c.Secret.Name, fmt.Sprintf("secret %q", c.Secret.Name)); err != nil {
			return err
		}
		s.SecretValues[c.Secret.Name] = *c.Secret
	case OpSecretDelete:
		return deleteKey(s.SecretValues, c.Name, "secret")
	case OpSeed:
		if s.Seeded {
			return nil
		}
		for _, srv := range c.Seed.Servers {
			s.Servers[srv.Name] = srv
		}
		for _, a := range c.Seed.Accounts {
			a.PublicKeys = slices.Clone(a.PublicKeys)
			s.Accounts[AccountKey(a.Server, a.Login)] = a
		}
		s.Seeded = true
	case OpTransferAdd:
		return m.addTransfer(c)
	case OpTransferUpdate:
		return m.updateTransfer(c)
	case OpTransferTask:
		return m.taskProgress(c)
	case OpTransferAction:
		return m.transferAction(c)
	case OpTransferTakeover:
		// Only RUNNING transfers can be cut: the index's, collected
		// before they change.
		var cut []Transfer
		for t := range s.Running() {
			// From version 3, a chain past its data goes on RUNNING
			// with the next ACTIVE node (Transfer.InTasks).
			if t.CutBefore(c.Epoch) && !(c.version() >= 3 && t.InTasks()) {
				cut = append(cut, t)
			}
		}
		for _, t := range cut {
			t.Status, t.ErrorCode = StatusInterrupted, TeConnectionReset
			t.ErrorDetails = fmt.Sprintf("node %s lost the lease (epoch %d) while it ran", t.NodeID, t.Epoch)
			if t.IsServer {
				t.Stop = c.At
			}
			s.putTransfer(t)
		}
	case OpTransferArchive:
		for _, id := range c.Change.IDs {
			if t, ok := s.Transfers[id]; ok && t.Finished() {
				t.Archived = true
				s.putTransfer(t)
			}
		}
		m.prune()
	}
	return nil
}

// checkPut enforces a put's mode on m[key]; what names the object.
func checkPut[V any](mode PutMode, m map[string]V, key, what string) error {
	_, exists := m[key]
	switch {
	case mode == PutCreate && exists:
		return fmt.Errorf("%s %w", what, ErrExists)
	case mode == PutUpdate && !exists:
		return fmt.Errorf("%s: %w", what, ErrUnknownObject)
	}
	return nil
}

func deleteKey[V any](m map[string]V, key, what string) error {
	if _, ok := m[key]; !ok {
		return fmt.Errorf("%s %s: %w", what, key, ErrUnknownObject)
	}
	delete(m, key)
	return nil
}

// deleteCascade deletes parents[name] and the children it owns.
func deleteCascade[P, C any](parents map[string]P, children map[string]C, name, what string, owner func(C) string) error {
	if err := deleteKey(parents, name, what); err != nil {
		return err
	}
	for k, ch := range children {
		if owner(ch) == name {
			delete(children, k)
		}
	}
	return nil
}

// addTransfer adds c's new transfer (an ID taken is refused).
func (m *Machine) addTransfer(c Command) error {
	s := &m.s
	t := *c.Transfer
	if _, ok := s.Transfers[t.ID]; ok {
		return fmt.Errorf("transfer %d: %w", t.ID, ErrExists)
	}
	if t.ChildKey != "" && s.ChildOf(t.ChildKey) != 0 {
		return nil // a TRANSFER task run again: its child is there
	}
	t.Tasks = nil
	if c.Epoch != 0 {
		t.Epoch = c.Epoch
	}
	t.Archived = false
	s.putTransfer(t)
	s.NextTransferID = max(s.NextTransferID, t.ID)
	m.prune()
	return nil
}

func (m *Machine) transfer(id uint64) (Transfer, error) {
	t, ok := m.s.Transfers[id]
	if !ok {
		return t, fmt.Errorf("transfer %d: %w", id, ErrUnknownObject)
	}
	return t, nil
}

// With is t after change ch, made under epoch at time at: what an
// OpTransferUpdate does to it once ch.From and the epoch are checked. A
// transfer recorded at its end in one command is its start With its end.
func (t Transfer) With(ch TransferChange, epoch uint64, at time.Time) Transfer {
	if ch.Progress != nil {
		if *ch.Progress != t.Progress {
			t.Checkpoints++
		}
		t.Progress = *ch.Progress
	}
	if ch.Filesize != nil {
		t.Filesize = *ch.Filesize
	}
	if ch.Step != "" {
		t.Step = ch.Step
	}
	if ch.Status != "" {
		t.Status = ch.Status
		t.ErrorCode, t.ErrorDetails = ch.ErrorCode, ch.ErrorDetails
		t.NextRetry = ch.NextRetry
		t.Archived = false
		switch {
		case ch.Status == StatusRunning:
			t.Epoch, t.NodeID = epoch, ch.NodeID
			t.Stop = time.Time{}
		case t.Finished():
			t.Stop = at
		}
	}
	if ch.Attempt {
		t.Attempts++
	}
	return t
}

func (m *Machine) updateTransfer(c Command) error {
	ch := c.Change
	t, err := m.transfer(ch.ID)
	if err != nil {
		return err
	}
	if ch.Status == "" {
		// A checkpoint: only from the run that owns the transfer.
		if t.Epoch != c.Epoch || t.Archived {
			return fmt.Errorf("checkpoint of transfer %d under epoch %d, run under %d: %w", ch.ID, c.Epoch, t.Epoch, ErrStaleEpoch)
		}
	} else if !slices.Contains(ch.From, t.Status) {
		return fmt.Errorf("transfer %d is %s, not %v: %w", ch.ID, t.Status, ch.From, ErrTransferState)
	}
	t = t.With(*ch, c.Epoch, c.At)
	m.s.putTransfer(t)
	if t.Finished() {
		m.prune()
	}
	return nil
}

// transferAction applies an operator's pause, resume, cancel or retry.
func (m *Machine) transferAction(c Command) error {
	ch := c.Change
	t, err := m.transfer(ch.ID)
	if err != nil {
		return err
	}
	var from []string
	var to string
	switch ch.Action {
	case "pause":
		from, to = []string{StatusPlanned, StatusRunning, StatusInterrupted}, StatusPaused
	case "resume":
		from, to = []string{StatusPaused, StatusInterrupted}, StatusPlanned
	case "cancel":
		from, to = []string{StatusPlanned, StatusRunning, StatusPaused, StatusInterrupted, StatusError}, StatusCancelled
	case "retry":
		from, to = []string{StatusError, StatusCancelled}, StatusPlanned
	default:
		return fmt.Errorf("transfer %d: unknown action %q", ch.ID, ch.Action)
	}
	if t.IsServer {
		// A client of our servers drives its own transfer; an operator
		// can only close the record.
		from = []string{StatusRunning, StatusInterrupted}
		if ch.Action != "cancel" {
			from = nil
		}
	}
	if !slices.Contains(from, t.Status) {
		return fmt.Errorf("cannot %s transfer %d: it is %s: %w", ch.Action, ch.ID, t.Status, ErrTransferState)
	}
	t.Status, t.Archived, t.NextRetry = to, false, time.Time{}
	switch ch.Action {
	case "retry":
		t.Attempts, t.ErrorCode, t.ErrorDetails, t.Stop = 0, "", "", time.Time{}
		if c.version() >= 3 {
			t.Tasks, t.Step = nil, StepNone // the chain starts over
		}
	case "resume":
		t.ErrorCode, t.ErrorDetails = "", ""
	case "cancel":
		t.Stop = c.At
	}
	m.s.putTransfer(t)
	m.prune()
	return nil
}

func (s *State) initMFT() {
	if s.Servers == nil {
		s.Servers = map[string]Server{}
	}
	if s.Accounts == nil {
		s.Accounts = map[string]LocalAccount{}
	}
	if s.Partners == nil {
		s.Partners = map[string]Partner{}
	}
	if s.RemoteAccounts == nil {
		s.RemoteAccounts = map[string]RemoteAccount{}
	}
	if s.Rules == nil {
		s.Rules = map[string]Rule{}
	}
	if s.Transfers == nil {
		s.Transfers = map[uint64]Transfer{}
	}
	if s.Keys == nil {
		s.Keys = map[string]PGPKey{}
	}
	if s.SecretValues == nil {
		s.SecretValues = map[string]Secret{}
	}
	if s.Schedules == nil {
		s.Schedules = map[string]Schedule{}
	}
}

func (s State) cloneMFT(c *State) {
	c.Servers = maps.Clone(s.Servers)
	c.Accounts = make(map[string]LocalAccount, len(s.Accounts))
	for k, a := range s.Accounts {
		a.PublicKeys = slices.Clone(a.PublicKeys)
		a.PasswordHash = slices.Clone(a.PasswordHash)
		c.Accounts[k] = a
	}
	c.Partners = maps.Clone(s.Partners)
	c.RemoteAccounts = maps.Clone(s.RemoteAccounts)
	c.Rules = maps.Clone(s.Rules)
	c.Keys = maps.Clone(s.Keys)
	c.SecretValues = maps.Clone(s.SecretValues)
	c.Transfers = maps.Clone(s.Transfers)
	c.Schedules = maps.Clone(s.Schedules) // runs are replaced, never changed in place
	c.ix = nil                            // built for the copy when asked (State.index)
	c.initMFT()
}

// taskProgress records a task's start or end (OpTransferTask), from the
// run that owns the transfer only. A start of a task RUNNING already (its
// node died in it) counts one more run; an end needs a RUNNING start.
func (m *Machine) taskProgress(c Command) error {
	ch := c.Task
	t, err := m.transfer(ch.ID)
	if err != nil {
		return err
	}
	if t.Epoch != c.Epoch || t.Status != StatusRunning || t.Archived {
		return fmt.Errorf("task of transfer %d under epoch %d, run under %d (%s): %w", ch.ID, c.Epoch, t.Epoch, t.Status, ErrStaleEpoch)
	}
	switch ch.Phase {
	case PhasePre, PhasePost, PhaseError:
	default:
		return fmt.Errorf("transfer %d: unknown task phase %q", ch.ID, ch.Phase)
	}
	i := slices.IndexFunc(t.Tasks, func(r TaskRun) bool { return r.Phase == ch.Phase && r.Index == ch.Index })
	// Copy on write: readers share the old slice.
	t.Tasks = slices.Clone(t.Tasks)
	switch ch.State {
	case TaskRunning:
		r := TaskRun{Phase: ch.Phase, Index: ch.Index, Type: ch.Type}
		if i >= 0 {
			r = t.Tasks[i]
		}
		r.State, r.Start, r.Stop, r.NodeID, r.Error, r.Output = TaskRunning, c.At, time.Time{}, ch.NodeID, "", ""
		r.Runs++
		if i >= 0 {
			t.Tasks[i] = r
		} else {
			t.Tasks = append(t.Tasks, r)
		}
	case TaskDone, TaskError:
		if i < 0 || t.Tasks[i].State != TaskRunning {
			return fmt.Errorf("transfer %d: end of %s task %d that is not running: %w", ch.ID, ch.Phase, ch.Index, ErrTransferState)
		}
		r := &t.Tasks[i]
		r.State, r.Stop, r.Error, r.Path = ch.State, c.At, bounded(ch.Error), ch.Path
		r.Output = bounded(ch.Output)
	default:
		return fmt.Errorf("transfer %d: unknown task state %q", ch.ID, ch.State)
	}
	m.s.putTransfer(t)
	return nil
}

// bounded cuts s to at most MaxTaskOutput bytes, on a character boundary.
func bounded(s string) string {
	if len(s) <= MaxTaskOutput {
		return s
	}
	n := MaxTaskOutput
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
