package mirror

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Bounds on every PostgreSQL operation, so that nobody waits long on a
// database that is down or unreachable.
const (
	pgConnectTimeout   = 2 * time.Second
	pgStatementTimeout = "2000" // ms, enforced by the server
	pgOpTimeout        = 3 * time.Second
	pgMigrateTimeout   = "60s" // migrations may wait on another node's lock
	// pgMigrationLock is the advisory lock key ("udmgmirr") that serialises
	// migrations when several nodes start at once against one database.
	pgMigrationLock int64 = 0x75646d676d697272
)

type pgStore struct {
	pool *pgxpool.Pool
	// migrated is set once the migrations have run, and cleared when a table
	// turns out to be missing (a database recreated under the cluster);
	// migrating holds the one attempt under way (a semaphore that honours
	// contexts).
	migrated  atomic.Bool
	migrating chan struct{}
}

func openPostgres(o Options) (*pgStore, error) {
	cfg, err := pgPoolConfig(o)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("mirror: postgresql pool for %s: %w", o.Address, err)
	}
	return &pgStore{pool: pool, migrating: make(chan struct{}, 1)}, nil
}

// pgPoolConfig turns the options into a pool configuration. The connection
// string is built from the options alone; as with libpq, PG* environment
// variables still fill settings the options leave unset.
func pgPoolConfig(o Options) (*pgxpool.Config, error) {
	if o.Address == "" || o.Name == "" || o.User == "" {
		return nil, errors.New("mirror: postgresql needs Address, Name and User")
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, errors.New("mirror: postgresql TLSCert and TLSKey go together")
	}
	host, port := o.Address, "5432"
	if h, p, err := net.SplitHostPort(o.Address); err == nil {
		host, port = h, p
	}
	kv := [][2]string{
		{"host", host}, {"port", port}, {"dbname", o.Name},
		{"user", o.User}, {"password", o.Password},
		{"application_name", "udmg-gateway"},
		{"connect_timeout", fmt.Sprint(int(pgConnectTimeout / time.Second))},
	}
	if o.TLSCert != "" {
		kv = append(kv, [2]string{"sslmode", "require"},
			[2]string{"sslcert", o.TLSCert}, [2]string{"sslkey", o.TLSKey})
	} else {
		kv = append(kv, [2]string{"sslmode", "prefer"})
	}
	var dsn strings.Builder
	for _, p := range kv {
		fmt.Fprintf(&dsn, "%s='%s' ", p[0], quoteDSN(p[1]))
	}
	cfg, err := pgxpool.ParseConfig(dsn.String())
	if err != nil {
		return nil, fmt.Errorf("mirror: postgresql settings for %s: %w", o.Address, err)
	}
	cfg.ConnConfig.ConnectTimeout = pgConnectTimeout
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = pgStatementTimeout
	cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "10000"
	cfg.MaxConns = 4
	cfg.PingTimeout = time.Second
	return cfg, nil
}

func quoteDSN(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}

// ready runs the migrations once; until they succeed every operation tries
// them first, so a store opened lazily catches up when the database returns.
func (s *pgStore) ready(ctx context.Context) error {
	if s.migrated.Load() {
		return nil
	}
	select {
	case s.migrating <- struct{}{}:
		defer func() { <-s.migrating }()
	case <-ctx.Done():
		return fmt.Errorf("mirror: wait for migrations: %w", ctx.Err())
	}
	if s.migrated.Load() {
		return nil
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	s.migrated.Store(true)
	return nil
}

// check notes a missing table, so the next operation migrates again.
func (s *pgStore) check(err error) error {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "42P01" /* undefined_table */ {
		s.migrated.Store(false)
	}
	return err
}

// migrate applies the missing migrations in one transaction holding an
// advisory lock, so nodes starting together apply each exactly once.
func (s *pgStore) migrate(ctx context.Context) error {
	ms, err := migrations("postgresql")
	if err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("mirror: migrate postgresql: %w", err)
	}
	defer tx.Rollback(context.Background())
	steps := []string{
		"SET LOCAL statement_timeout = '" + pgMigrateTimeout + "'",
		fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", pgMigrationLock),
		`CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`,
	}
	for _, q := range steps {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("mirror: migrate postgresql: %w", err)
		}
	}
	applied, err := pgApplied(ctx, tx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("mirror: migration %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			return fmt.Errorf("mirror: record migration %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("mirror: migrate postgresql: commit: %w", err)
	}
	return nil
}

func pgApplied(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) (map[int]bool, error) {
	rows, err := q.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("mirror: read schema_migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("mirror: read schema_migrations: %w", err)
	}
	applied := make(map[int]bool, len(versions))
	for _, v := range versions {
		applied[int(v)] = true
	}
	return applied, nil
}

// begin bounds an operation and makes sure the schema is there.
func (s *pgStore) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(ctx, pgOpTimeout)
	if err := s.ready(ctx); err != nil {
		cancel()
		return nil, nil, err
	}
	return ctx, cancel, nil
}

const upsertNodeSQL = `
INSERT INTO udmg_nodes (node_id, hostname, ip_address, port, status, licensed, started_at, last_update, last_active_date)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (node_id) DO UPDATE SET
	hostname = excluded.hostname,
	ip_address = excluded.ip_address,
	port = excluded.port,
	status = excluded.status,
	licensed = excluded.licensed,
	started_at = excluded.started_at,
	last_update = excluded.last_update,
	last_active_date = COALESCE(excluded.last_active_date, udmg_nodes.last_active_date)`

func (s *pgStore) UpsertNode(ctx context.Context, r Row) error {
	if err := validateRow(r); err != nil {
		return err
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("mirror: upsert node %s: %w", r.NodeID, err)
	}
	defer cancel()
	if _, err := s.pool.Exec(ctx, upsertNodeSQL, r.NodeID, r.Hostname, r.IPAddress, r.Port, r.Status, r.Licensed,
		norm(r.StartedAt), norm(r.LastUpdate), pgNullTime(r.LastActiveDate)); err != nil {
		return fmt.Errorf("mirror: upsert node %s: %w", r.NodeID, s.check(err))
	}
	return nil
}

func (s *pgStore) MarkOffline(ctx context.Context, ids []string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("mirror: mark %d nodes offline: %w", len(ids), err)
	}
	defer cancel()
	if _, err := s.pool.Exec(ctx, `
UPDATE udmg_nodes SET status = 'OFFLINE', last_update = $2
WHERE node_id = ANY($1) AND last_update < $2 AND status <> 'OFFLINE'`, ids, norm(at)); err != nil {
		return fmt.Errorf("mirror: mark %d nodes offline: %w", len(ids), s.check(err))
	}
	return nil
}

func (s *pgStore) Nodes(ctx context.Context) ([]Row, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("mirror: read nodes: %w", err)
	}
	defer cancel()
	rows, err := s.pool.Query(ctx, `
SELECT node_id, hostname, ip_address, port, status, licensed, started_at, last_update, last_active_date
FROM udmg_nodes ORDER BY node_id COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("mirror: read nodes: %w", s.check(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Row, error) {
		var r Row
		var active *time.Time
		err := row.Scan(&r.NodeID, &r.Hostname, &r.IPAddress, &r.Port, &r.Status, &r.Licensed,
			&r.StartedAt, &r.LastUpdate, &active)
		r.StartedAt, r.LastUpdate = r.StartedAt.UTC(), r.LastUpdate.UTC()
		if active != nil {
			r.LastActiveDate = active.UTC()
		}
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("mirror: read nodes: %w", s.check(err))
	}
	return out, nil
}

const upsertHistorySQL = `
INSERT INTO udmg_transfer_history (id, remote_id, is_server, is_send, protocol, rule, account, agent,
	local_path, remote_path, filesize, status, step, progress, error_code, error_details, start, stop, node_id, tasks)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
ON CONFLICT (id) DO UPDATE SET
	remote_id = excluded.remote_id, is_server = excluded.is_server, is_send = excluded.is_send,
	protocol = excluded.protocol, rule = excluded.rule, account = excluded.account, agent = excluded.agent,
	local_path = excluded.local_path, remote_path = excluded.remote_path, filesize = excluded.filesize,
	status = excluded.status, step = excluded.step, progress = excluded.progress,
	error_code = excluded.error_code, error_details = excluded.error_details,
	start = excluded.start, stop = excluded.stop, node_id = excluded.node_id, tasks = excluded.tasks`

const historyColumns = `id, remote_id, is_server, is_send, protocol, rule, account, agent,
	local_path, remote_path, filesize, status, step, progress, error_code, error_details, start, stop, node_id, tasks`

func (s *pgStore) AddHistory(ctx context.Context, hs ...HistoryEntry) error {
	if len(hs) == 0 {
		return nil
	}
	if err := validateHistory(hs); err != nil {
		return err
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("mirror: add history %s: %w", historyIDs(hs), err)
	}
	defer cancel()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var b pgx.Batch
		for _, h := range hs {
			b.Queue(upsertHistorySQL, historyArgs(h, norm(h.Start), pgNullTime(h.Stop))...)
		}
		return tx.SendBatch(ctx, &b).Close()
	})
	if err != nil {
		return fmt.Errorf("mirror: add history %s: %w", historyIDs(hs), s.check(err))
	}
	return nil
}

func (s *pgStore) History(ctx context.Context, q HistoryQuery) ([]HistoryEntry, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("mirror: read history: %w", err)
	}
	defer cancel()
	query, args := q.historySelect(`id COLLATE "C"`, func(t time.Time) any { return norm(t) })
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("mirror: read history: %w", s.check(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (HistoryEntry, error) {
		var h HistoryEntry
		var stop *time.Time
		err := row.Scan(&h.ID, &h.RemoteID, &h.IsServer, &h.IsSend, &h.Protocol, &h.Rule, &h.Account, &h.Agent,
			&h.LocalPath, &h.RemotePath, &h.Filesize, &h.Status, &h.Step, &h.Progress, &h.ErrorCode, &h.ErrorDetails,
			&h.Start, &stop, &h.NodeID, &h.Tasks)
		h.Start = h.Start.UTC()
		if stop != nil {
			h.Stop = stop.UTC()
		}
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("mirror: read history: %w", s.check(err))
	}
	return out, nil
}

func (s *pgStore) Close() error {
	s.pool.Close()
	return nil
}

// appliedMigrations lists the recorded schema versions (for tests).
func (s *pgStore) appliedMigrations(ctx context.Context) (map[int]bool, error) {
	return pgApplied(ctx, s.pool)
}

func pgNullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	n := norm(t)
	return &n
}
