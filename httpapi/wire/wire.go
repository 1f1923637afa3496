// Package wire is the JSON the admin API speaks: what httpapi answers and
// what its clients (udmgctl, the tests) decode. It holds types only, so a
// client links none of the server.
package wire

import "time"

// NodeStatus is one node as the seed's sb_healthcheck and sb_mgmt_nodes show it.
type NodeStatus struct {
	Status             string `json:"status,omitempty"`
	NodeID             string `json:"nodeId"`
	NodeHostname       string `json:"nodeHostname"`
	NodeIPAddress      string `json:"nodeIPAddress"`
	NodePort           string `json:"nodePort"`
	NodeStatus         string `json:"nodeStatus"`
	NodeUptime         string `json:"nodeUptime"`
	NodeLastUpdate     string `json:"nodeLastUpdate"`
	NodeLastActiveDate string `json:"nodeLastActiveDate"`
}

// NodeList answers /api/sb_mgmt_nodes.
type NodeList struct {
	Nodes []NodeStatus `json:"nodes"`
}

// ClusterStatus answers GET /api/cluster: who is ACTIVE, the lease, and how
// the answering node sees the Raft group.
type ClusterStatus struct {
	// Active is the node serving under an unexpired lease ("" when none).
	Active string      `json:"active"`
	Leader string      `json:"leader"`
	Lease  LeaseStatus `json:"lease"`
	// AnsweredBy is the node that answered, as it sees itself.
	AnsweredBy AnsweringNode  `json:"answeredBy"`
	Nodes      []ClusterEntry `json:"nodes"`
}

// LeaseStatus is the committed lease and the time left on it.
type LeaseStatus struct {
	Holder     string    `json:"holder"`
	Epoch      uint64    `json:"epoch"`
	Released   bool      `json:"released"`
	Duration   string    `json:"duration"`
	AcquiredAt time.Time `json:"acquiredAt"`
	RenewedAt  time.Time `json:"renewedAt"`
	// RemainingSeconds is the time left before the lease expires unless
	// renewed. RemainingFrom says how it was measured: "holder clock" when
	// the holder answers (its own monotonic clock, which fences it), or
	// "last renewal" (RenewedAt + Duration against the answering node's
	// wall clock, an estimate).
	RemainingSeconds float64 `json:"remainingSeconds"`
	RemainingFrom    string  `json:"remainingFrom"`
	// RenewalSeconds is how long the holder's last renewal of this epoch
	// took from proposal to commit; only the holder measures it, so only
	// the holder's answer has it.
	RenewalSeconds *float64 `json:"renewalSeconds,omitempty"`
}

// AnsweringNode is the answering node's own view.
type AnsweringNode struct {
	NodeID      string     `json:"nodeId"`
	Mode        string     `json:"mode"`
	RaftState   string     `json:"raftState"`
	LastContact *time.Time `json:"lastContact,omitempty"`
	Term        uint64     `json:"term"`
	CommitIndex uint64     `json:"commitIndex"`
	Voters      int        `json:"voters"`
}

// ClusterEntry is one node of the replicated registry.
type ClusterEntry struct {
	NodeID string `json:"nodeId"`
	// Status is the mode the node last reported to the registry, except
	// ACTIVE for the lease holder.
	Status    string `json:"status"`
	AdminAddr string `json:"adminAddr"`
	Leader    bool   `json:"leader"`
	Active    bool   `json:"active"`
	// CommandVersion is the newest replicated-command version the node's
	// release applies, as it gossiped it; the leader writes at the lowest
	// of its voters', so a rolling upgrade shows here how far it got.
	CommandVersion int `json:"commandVersion"`
}

// License answers GET /api/license: the license in force and who holds its
// slots.
type License struct {
	ID         string `json:"id"`
	Licensee   string `json:"licensee"`
	Nodes      int    `json:"nodes"`
	Issued     string `json:"issued"`
	Expires    string `json:"expires"`
	Evaluation bool   `json:"evaluation"`
	// Valid is false when the installed license has expired, is not yet
	// valid, or cannot be verified by this node; Problem says why.
	Valid   bool   `json:"valid"`
	Problem string `json:"problem,omitempty"`
	// Slots lists every registered node in slot order (first registration)
	// with whether it holds a slot and its mode.
	Slots []Slot `json:"slots"`
	// SlotsUsed counts the nodes holding a slot.
	SlotsUsed int `json:"slotsUsed"`
}

// Slot is one node's place in the license.
type Slot struct {
	NodeID   string `json:"nodeId"`
	Licensed bool   `json:"licensed"`
	Status   string `json:"status"`
}

// User is a gateway administrator as the API shows it: never with its hash.
type User struct {
	Username string            `json:"username"`
	Perms    map[string]string `json:"perms"`
}

// UserList answers GET /api/users.
type UserList struct {
	Users []User `json:"users"`
}

// TokenResponse answers POST /api/tokens. The token is shown once; the
// cluster keeps only its SHA-256.
type TokenResponse struct {
	Token   string `json:"token"`
	Expires string `json:"expires"`
}

// Server is a local server as the API shows it: never with its TLS key.
type Server struct {
	Name       string `json:"name"`
	Protocol   string `json:"protocol"`
	Port       int    `json:"port"`
	Root       string `json:"root"`
	PassiveMin int    `json:"passiveMin,omitempty"`
	PassiveMax int    `json:"passiveMax,omitempty"`
	PublicHost string `json:"publicHost,omitempty"`
	TLS        bool   `json:"tls"`
	TLSCert    string `json:"tlsCert,omitempty"`
	// TLSRequired: clients must use AUTH TLS before they log in.
	TLSRequired bool `json:"tlsRequired"`
	Enabled     bool `json:"enabled"`
}

// Account is a local account as the API shows it: no hash.
type Account struct {
	Login       string   `json:"login"`
	Server      string   `json:"server"`
	HasPassword bool     `json:"hasPassword"`
	PublicKeys  []string `json:"publicKeys"`
}

// Partner is a remote server as the API shows it.
type Partner struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Address  string `json:"address"`
	HostKey  string `json:"hostKey,omitempty"`
	TLS      bool   `json:"tls"`
	TLSCert  string `json:"tlsCert,omitempty"`
}

// RemoteAccount is the gateway's login at a partner as the API shows it:
// whether it has a password or key, never them.
type RemoteAccount struct {
	Login         string `json:"login"`
	Partner       string `json:"partner"`
	HasPassword   bool   `json:"hasPassword"`
	HasPrivateKey bool   `json:"hasPrivateKey"`
}

// Rule is a rule as the API shows it.
type Rule struct {
	Name      string `json:"name"`
	Direction string `json:"direction"`
	Path      string `json:"path"`
	LocalDir  string `json:"localDir"`
	// The tasks chained around every transfer of the rule.
	PreTasks   []Task `json:"preTasks"`
	PostTasks  []Task `json:"postTasks"`
	ErrorTasks []Task `json:"errorTasks"`
}

// PGPKey is a stored OpenPGP key as the API shows it: never the key.
// Secret is a named secret of the tasks (#SECRET:name#): its name only.
type Secret struct {
	Name string `json:"name"`
}

// PGPKey is an OpenPGP key of the tasks, without the key itself.
type PGPKey struct {
	Name        string `json:"name"`
	Private     bool   `json:"private"`
	Fingerprint string `json:"fingerprint"`
}

// Task is one task of a rule: a type (COPY, MOVE, TRANSFER...) and its
// arguments.
type Task struct {
	Type string         `json:"type"`
	Args map[string]any `json:"args,omitempty"`
}

// TaskRun is one task of a transfer's chain, as far as it got.
type TaskRun struct {
	Phase    string `json:"phase"`    // pre, post, error
	Position int    `json:"position"` // from 1 in the rule's list
	Type     string `json:"type"`
	State    string `json:"state"` // RUNNING, DONE, ERROR
	Start    string `json:"start"`
	Stop     string `json:"stop,omitempty"`
	Duration string `json:"duration,omitempty"`
	NodeID   string `json:"nodeId,omitempty"`
	Runs     int    `json:"runs"` // more than 1: run again after a failover
	Error    string `json:"error,omitempty"`
	Output   string `json:"output,omitempty"`
	Path     string `json:"path,omitempty"` // the chain's file after it
}

// Transfer is a transfer as the API shows it (Waarp Gateway's fields).
type Transfer struct {
	ID           uint64  `json:"id"`
	IsServer     bool    `json:"isServer"`
	Direction    string  `json:"direction"`
	Protocol     string  `json:"protocol"`
	Rule         string  `json:"rule"`
	Server       string  `json:"server,omitempty"`
	Partner      string  `json:"partner,omitempty"`
	Account      string  `json:"account"`
	LocalPath    string  `json:"localPath"`
	RemotePath   string  `json:"remotePath"`
	Filesize     int64   `json:"filesize"`
	Progress     int64   `json:"progress"`
	Percent      float64 `json:"percent"`
	Status       string  `json:"status"`
	Step         string  `json:"step"`
	ErrorCode    string  `json:"errorCode,omitempty"`
	ErrorDetails string  `json:"errorDetails,omitempty"`
	Start        string  `json:"start"`
	Stop         string  `json:"stop,omitempty"`
	Duration     string  `json:"duration,omitempty"`
	Attempts     int     `json:"attempts"`
	MaxAttempts  int     `json:"maxAttempts"`
	NextRetry    string  `json:"nextRetry,omitempty"`
	Checkpoints  int     `json:"checkpoints"`
	NodeID       string  `json:"nodeId,omitempty"`
	// Tasks is the chain of the rule's tasks run so far; Parent the
	// transfer whose TRANSFER task added this one.
	Tasks  []TaskRun `json:"tasks,omitempty"`
	Parent uint64    `json:"parent,omitempty"`
}

// HistoryItem is a finished transfer from the history table.
type HistoryItem struct {
	ID           string    `json:"id"`
	IsServer     bool      `json:"isServer"`
	Direction    string    `json:"direction"`
	Protocol     string    `json:"protocol"`
	Rule         string    `json:"rule"`
	Agent        string    `json:"agent"`
	Account      string    `json:"account"`
	LocalPath    string    `json:"localPath"`
	RemotePath   string    `json:"remotePath"`
	Filesize     int64     `json:"filesize"`
	Progress     int64     `json:"progress"`
	Status       string    `json:"status"`
	Step         string    `json:"step"`
	ErrorCode    string    `json:"errorCode,omitempty"`
	ErrorDetails string    `json:"errorDetails,omitempty"`
	Start        string    `json:"start"`
	Stop         string    `json:"stop,omitempty"`
	Duration     string    `json:"duration,omitempty"`
	NodeID       string    `json:"nodeId"`
	Tasks        []TaskRun `json:"tasks,omitempty"`
}
