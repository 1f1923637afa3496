package mirror

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// sqliteTimeLayout stores times as fixed-width UTC text, so that comparing
// and ordering the text compares and orders the times.
const sqliteTimeLayout = "2006-01-02T15:04:05.000000Z"

type sqliteStore struct {
	db   *sql.DB
	path string
}

func openSQLite(ctx context.Context, o Options) (*sqliteStore, error) {
	if o.Path == "" {
		return nil, errors.New("mirror: sqlite needs Path")
	}
	// locking_mode(EXCLUSIVE) before the switch to WAL keeps the WAL index
	// in the process's heap instead of a shared mapping of udmg.db-shm.
	// Through that mapping a stalled disk (DataDir frozen, a dead SAN
	// path) pauses the whole node, not just the writer: a write to a
	// mapped page blocks in the kernel's page fault, where the Go runtime
	// cannot stop the goroutine, so the next garbage collection waits for
	// it with every other goroutine stopped, the lease timer and the
	// fence among them (TestDiskStallDoesNotPauseTheProcess). The file is
	// then the node's alone, through one connection; another opener
	// waits busy_timeout (applied first by the driver) and is refused.
	// _txlock=immediate takes the write lock at BEGIN.
	dsn := "file:" + (&url.URL{Path: o.Path}).EscapedPath() +
		"?_pragma=busy_timeout(10000)&_pragma=locking_mode(EXCLUSIVE)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("mirror: open sqlite %s: %w", o.Path, err)
	}
	db.SetMaxOpenConns(1)
	s := &sqliteStore{db: db, path: o.Path}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		if strings.Contains(err.Error(), "SQLITE_BUSY") {
			return nil, fmt.Errorf("mirror: sqlite %s is held by another process (a node keeps its file to itself): %w", o.Path, err)
		}
		return nil, err
	}
	return s, nil
}

// migrate applies the missing migrations in one immediate transaction.
func (s *sqliteStore) migrate(ctx context.Context) error {
	ms, err := migrations("sqlite")
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("mirror: migrate sqlite %s: %w", s.path, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text    NOT NULL,
		applied_at text    NOT NULL)`); err != nil {
		return fmt.Errorf("mirror: migrate sqlite %s: %w", s.path, err)
	}
	applied, err := sqliteApplied(ctx, tx)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Format(sqliteTimeLayout)
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("mirror: migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
			m.version, m.name, now); err != nil {
			return fmt.Errorf("mirror: record migration %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("mirror: migrate sqlite %s: commit: %w", s.path, err)
	}
	return nil
}

func sqliteApplied(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) (map[int]bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("mirror: read schema_migrations: %w", err)
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("mirror: read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mirror: read schema_migrations: %w", err)
	}
	return applied, nil
}

func (s *sqliteStore) UpsertNode(ctx context.Context, r Row) error {
	if err := validateRow(r); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, upsertNodeSQL, r.NodeID, r.Hostname, r.IPAddress, r.Port, r.Status, r.Licensed,
		sqliteTime(r.StartedAt), sqliteTime(r.LastUpdate), sqliteNullTime(r.LastActiveDate)); err != nil {
		return fmt.Errorf("mirror: upsert node %s: %w", r.NodeID, err)
	}
	return nil
}

func (s *sqliteStore) MarkOffline(ctx context.Context, ids []string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return fmt.Errorf("mirror: mark %d nodes offline: %w", len(ids), err)
	}
	if _, err := s.db.ExecContext(ctx, `
UPDATE udmg_nodes SET status = 'OFFLINE', last_update = $2
WHERE node_id IN (SELECT value FROM json_each($1)) AND last_update < $2 AND status <> 'OFFLINE'`,
		string(list), sqliteTime(at)); err != nil {
		return fmt.Errorf("mirror: mark %d nodes offline: %w", len(ids), err)
	}
	return nil
}

func (s *sqliteStore) Nodes(ctx context.Context) ([]Row, error) {
	rows, err := s.db.QueryContext(ctx, `
SELECT node_id, hostname, ip_address, port, status, licensed, started_at, last_update, last_active_date
FROM udmg_nodes ORDER BY node_id`)
	if err != nil {
		return nil, fmt.Errorf("mirror: read nodes: %w", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		var started, updated string
		var active sql.NullString
		if err := rows.Scan(&r.NodeID, &r.Hostname, &r.IPAddress, &r.Port, &r.Status, &r.Licensed,
			&started, &updated, &active); err != nil {
			return nil, fmt.Errorf("mirror: read nodes: %w", err)
		}
		var errs [3]error
		r.StartedAt, errs[0] = parseSQLiteTime(started)
		r.LastUpdate, errs[1] = parseSQLiteTime(updated)
		r.LastActiveDate, errs[2] = parseSQLiteTime(active.String)
		if err := errors.Join(errs[:]...); err != nil {
			return nil, fmt.Errorf("mirror: read node %s: %w", r.NodeID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mirror: read nodes: %w", err)
	}
	return out, nil
}

func (s *sqliteStore) AddHistory(ctx context.Context, hs ...HistoryEntry) error {
	if len(hs) == 0 {
		return nil
	}
	if err := validateHistory(hs); err != nil {
		return err
	}
	err := func() error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		st, err := tx.PrepareContext(ctx, upsertHistorySQL)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, h := range hs {
			if _, err := st.ExecContext(ctx, historyArgs(h, sqliteTime(h.Start), sqliteNullTime(h.Stop))...); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	if err != nil {
		return fmt.Errorf("mirror: add history %s: %w", historyIDs(hs), err)
	}
	return nil
}

func (s *sqliteStore) History(ctx context.Context, q HistoryQuery) ([]HistoryEntry, error) {
	query, args := q.historySelect("id", func(t time.Time) any { return sqliteTime(t) })
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("mirror: read history: %w", err)
	}
	defer rows.Close()
	var out []HistoryEntry
	for rows.Next() {
		var h HistoryEntry
		var start string
		var stop sql.NullString
		if err := rows.Scan(&h.ID, &h.RemoteID, &h.IsServer, &h.IsSend, &h.Protocol, &h.Rule, &h.Account, &h.Agent,
			&h.LocalPath, &h.RemotePath, &h.Filesize, &h.Status, &h.Step, &h.Progress, &h.ErrorCode, &h.ErrorDetails,
			&start, &stop, &h.NodeID, &h.Tasks); err != nil {
			return nil, fmt.Errorf("mirror: read history: %w", err)
		}
		var errs [2]error
		h.Start, errs[0] = parseSQLiteTime(start)
		h.Stop, errs[1] = parseSQLiteTime(stop.String)
		if err := errors.Join(errs[:]...); err != nil {
			return nil, fmt.Errorf("mirror: read history %s: %w", h.ID, err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mirror: read history: %w", err)
	}
	return out, nil
}

func (s *sqliteStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("mirror: close sqlite %s: %w", s.path, err)
	}
	return nil
}

// appliedMigrations lists the recorded schema versions (for tests).
func (s *sqliteStore) appliedMigrations(ctx context.Context) (map[int]bool, error) {
	return sqliteApplied(ctx, s.db)
}

func sqliteTime(t time.Time) string { return norm(t).Format(sqliteTimeLayout) }

func sqliteNullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return sqliteTime(t)
}

// parseSQLiteTime reads a stored time; empty text (NULL) is the zero time.
func parseSQLiteTime(text string) (time.Time, error) {
	if text == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(sqliteTimeLayout, text)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse time %q: %w", text, err)
	}
	return t, nil
}
