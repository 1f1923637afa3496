// Package mirror keeps the gateway's view of the cluster in a database for
// the outside world: the udmg_nodes table (read by /api/sb_mgmt_nodes and by
// license-slot counting in reports) and udmg_transfer_history (reports).
//
// The mirror is never the source of truth: cluster state lives in the Raft
// state machine. Clusters use PostgreSQL (pgx/v5); a single node may use the
// embedded SQLite default (modernc.org/sqlite, pure Go). Both run the same
// embedded migrations. Every PostgreSQL operation is bounded by short
// timeouts, and the Writer keeps the node's own row fresh off the hot path,
// so a database outage never slows the cluster down; the mirror catches up
// when the database returns.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Node statuses as the udmg_nodes table and the seed's API spell them.
const (
	StatusActive     = "ACTIVE"
	StatusPassive    = "PASSIVE"
	StatusOffline    = "OFFLINE"
	StatusUnlicensed = "UNLICENSED"
)

// Row is one node as the udmg_nodes table holds it.
type Row struct {
	NodeID, Hostname, IPAddress string
	Port                        int
	Status                      string // ACTIVE | PASSIVE | OFFLINE | UNLICENSED
	Licensed                    bool
	// Times are stored in UTC with microsecond precision (PostgreSQL's).
	StartedAt, LastUpdate time.Time
	// LastActiveDate is when the node was last ACTIVE; zero means never
	// (NULL). Upserting a zero value keeps the date already stored.
	LastActiveDate time.Time
}

// HistoryEntry is one finished transfer as udmg_transfer_history keeps it
// for reports (after Waarp Gateway's transfer history).
type HistoryEntry struct {
	ID           string // the cluster's transfer id; writing it again overwrites
	RemoteID     string // the partner's id for the transfer, if any
	IsServer     bool   // true when a partner connected to our listeners
	IsSend       bool   // true when the file left the gateway
	Protocol     string // sftp, ftp, ftps
	Rule         string
	Account      string // local or remote account that ran the transfer
	Agent        string // local server or partner name
	LocalPath    string
	RemotePath   string
	Filesize     int64 // -1 when unknown
	Status       string
	Step         string
	Progress     int64 // bytes moved
	ErrorCode    string
	ErrorDetails string
	Start, Stop  time.Time // Stop zero = none recorded (NULL)
	NodeID       string    // node that ran it
	// Tasks is the JSON array of the tasks its rule chained, as the
	// transfer recorded them (fsm.TaskRun); "" when none.
	Tasks string
}

// HistoryQuery selects history entries, newest start first. The filters
// that are set all apply; the empty ones select everything.
type HistoryQuery struct {
	Status  string // only this status
	Rule    string // only transfers of the rule of that name (either direction)
	Partner string // only client transfers with the partner of that name
	Account string // only this account (local login or remote account)
	// Since and Until bound the transfer's start, the time the history is
	// ordered by: Since <= start < Until; zero is no bound.
	Since, Until time.Time
	Limit        int // default 100, at most 1000
	Offset       int
}

// Store is the mirror backend.
type Store interface {
	// UpsertNode writes a node's own row; the node is the authority on it.
	UpsertNode(ctx context.Context, r Row) error
	// MarkOffline is the leader's write for nodes gossip reports dead: it
	// sets status OFFLINE and last_update = at on those rows whose
	// last_update is older than at and that are not OFFLINE already. A node
	// that wrote its own row after at is left alone, and repeating the call
	// keeps the time the node went OFFLINE. Unknown ids are ignored.
	MarkOffline(ctx context.Context, ids []string, at time.Time) error
	// Nodes returns every row, ordered by node_id (byte order).
	Nodes(ctx context.Context) ([]Row, error)
	// AddHistory records finished transfers, all in one transaction (all
	// or none: one commit for a batch instead of one per row, which cost
	// the embedded database 15 % of a node's CPU at a thousand small
	// uploads a second); idempotent on their IDs.
	AddHistory(ctx context.Context, hs ...HistoryEntry) error
	// History lists finished transfers, newest start first.
	History(ctx context.Context, q HistoryQuery) ([]HistoryEntry, error)
	// Close releases the connections.
	Close() error
}

// Options says which database holds the mirror; it mirrors server.ini's
// [database] section.
type Options struct {
	Type string // "sqlite" (default when empty) | "postgresql"
	Path string // sqlite file (e.g. <DataDir>/udmg.db)
	// PostgreSQL: Address is host:port (port 5432 when omitted) or a unix
	// socket directory; TLSCert and TLSKey, both or neither, switch to
	// sslmode=require with that client certificate.
	Address, Name, User, Password, TLSCert, TLSKey string
}

// Open connects to the database and runs the embedded migrations, so the
// caller gets a ready store or an error saying why not. Migrations are
// idempotent and safe when several nodes open one database at once.
func Open(ctx context.Context, o Options) (Store, error) {
	s, err := OpenLazy(ctx, o)
	if err != nil {
		return nil, err
	}
	if m, ok := s.(interface{ ready(context.Context) error }); ok {
		if err := m.ready(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// OpenLazy is Open for start-up while the database may be down: it checks
// the options and prepares the connection pool without reaching PostgreSQL,
// and the migrations run on the first operation that reaches it. Only bad
// options fail. SQLite is local, so OpenLazy opens and migrates it at once.
func OpenLazy(ctx context.Context, o Options) (Store, error) {
	switch o.Type {
	case "", "sqlite":
		return openSQLite(ctx, o)
	case "postgresql":
		return openPostgres(o)
	default:
		return nil, fmt.Errorf("mirror: unknown database type %q (want sqlite or postgresql)", o.Type)
	}
}

// ErrInvalidRow is returned for rows the mirror refuses to store.
var ErrInvalidRow = errors.New("invalid node row")

func validateRow(r Row) error {
	if r.NodeID == "" {
		return fmt.Errorf("%w: empty node id", ErrInvalidRow)
	}
	switch r.Status {
	case StatusActive, StatusPassive, StatusOffline, StatusUnlicensed:
	default:
		return fmt.Errorf("%w: node %s: status %q", ErrInvalidRow, r.NodeID, r.Status)
	}
	return nil
}

func validateHistory(hs []HistoryEntry) error {
	for _, h := range hs {
		if h.ID == "" {
			return errors.New("invalid history entry: empty id")
		}
	}
	return nil
}

// historyArgs are h's values in the order of upsertHistorySQL, times as
// the dialect stores them.
func historyArgs(h HistoryEntry, start, stop any) []any {
	return []any{h.ID, h.RemoteID, h.IsServer, h.IsSend, h.Protocol, h.Rule,
		h.Account, h.Agent, h.LocalPath, h.RemotePath, h.Filesize, h.Status, h.Step, h.Progress,
		h.ErrorCode, h.ErrorDetails, start, stop, h.NodeID, h.Tasks}
}

// historyIDs names a batch in errors: its first ID and its size.
func historyIDs(hs []HistoryEntry) string {
	if len(hs) == 1 {
		return hs[0].ID
	}
	return fmt.Sprintf("%s and %d more", hs[0].ID, len(hs)-1)
}

func (q HistoryQuery) bounds() (limit, offset int) {
	limit, offset = q.Limit, q.Offset
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	return limit, max(offset, 0)
}

// historySelect is the query of q in the dialect's SQL: the columns of
// historyColumns, newest start first, then by id in byID order; the
// filters that are set become parameters, each time through timeArg (how
// the dialect stores times), so that only those conditions reach the
// planner and it can use their index.
func (q HistoryQuery) historySelect(byID string, timeArg func(time.Time) any) (string, []any) {
	var where []string
	var args []any
	cond := func(sql string, arg any) {
		args = append(args, arg)
		where = append(where, strings.ReplaceAll(sql, "?", fmt.Sprintf("$%d", len(args))))
	}
	for _, f := range []struct{ column, value string }{{"status", q.Status}, {"rule", q.Rule}, {"account", q.Account}} {
		if f.value != "" {
			cond(f.column+" = ?", f.value)
		}
	}
	if q.Partner != "" {
		cond("agent = ? AND NOT is_server", q.Partner)
	}
	if !q.Since.IsZero() {
		cond("start >= ?", timeArg(normUp(q.Since)))
	}
	if !q.Until.IsZero() {
		cond("start < ?", timeArg(normUp(q.Until)))
	}
	sql := `SELECT ` + historyColumns + ` FROM udmg_transfer_history`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	limit, offset := q.bounds()
	args = append(args, limit, offset)
	return sql + fmt.Sprintf(" ORDER BY start DESC, %s LIMIT $%d OFFSET $%d", byID, len(args)-1, len(args)), args
}

// normUp is t rounded up to the stored precision: a stored time s is at
// or after t (before t) exactly when it is at or after (before) normUp(t).
func normUp(t time.Time) time.Time {
	n := norm(t)
	if n.Before(t) {
		n = n.Add(time.Microsecond)
	}
	return n
}

// norm is how times are stored: UTC, microseconds (PostgreSQL's precision).
func norm(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}
