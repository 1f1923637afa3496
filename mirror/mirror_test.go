package mirror

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/udmg/gateway/testsupport"
)

// backend is one database the mirror runs on; start gives a fresh, empty one.
type backend struct {
	name  string
	start func(t *testing.T) *testDB
}

var backends = []backend{
	{"sqlite", func(t *testing.T) *testDB {
		return &testDB{
			dialect: "sqlite",
			opts:    Options{Type: "sqlite", Path: filepath.Join(t.TempDir(), "udmg.db")},
			gate:    &gate{},
		}
	}},
	{"postgresql", func(t *testing.T) *testDB {
		pg := testsupport.StartPostgres(t)
		return &testDB{
			dialect: "postgresql",
			opts:    Options{Type: "postgresql", Address: pg.Addr, Name: pg.DB, User: pg.User, Password: pg.Password},
			pg:      pg,
		}
	}},
}

// testDB is a fresh database and a way to take it down and bring it back:
// PostgreSQL is really stopped and started; an SQLite file cannot go down,
// so a gate in front of the store makes every call hang until it reopens
// (the worst kind of outage: a database that does not answer).
type testDB struct {
	dialect string
	opts    Options
	pg      *testsupport.Postgres
	gate    *gate
}

func (d *testDB) open(t *testing.T) Store {
	t.Helper()
	s, err := Open(t.Context(), d.opts)
	if err != nil {
		t.Fatalf("open %s: %v", d.dialect, err)
	}
	t.Cleanup(func() { s.Close() })
	if d.gate != nil {
		return &gatedStore{Store: s, gate: d.gate}
	}
	return s
}

func (d *testDB) down(t *testing.T) {
	if d.pg != nil {
		d.pg.Stop(t)
		return
	}
	d.gate.close()
}

func (d *testDB) up(t *testing.T) {
	if d.pg != nil {
		d.pg.Start(t)
		return
	}
	d.gate.open()
}

// forEachBackend runs f as a parallel subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, db *testDB)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b.start(t))
		})
	}
}

var base = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))

func nodeRow(id string, status string, lastUpdate time.Time) Row {
	return Row{
		NodeID: id, Hostname: "host-" + id, IPAddress: "10.0.0.1", Port: 8080,
		Status: status, Licensed: true,
		StartedAt: base, LastUpdate: lastUpdate,
	}
}

// stored is r as the database gives it back.
func stored(r Row) Row {
	r.StartedAt, r.LastUpdate, r.LastActiveDate = norm(r.StartedAt), norm(r.LastUpdate), norm(r.LastActiveDate)
	return r
}

func nodesByID(t *testing.T, s Store) map[string]Row {
	t.Helper()
	rows, err := s.Nodes(t.Context())
	if err != nil {
		t.Fatalf("nodes: %v", err)
	}
	m := map[string]Row{}
	for _, r := range rows {
		m[r.NodeID] = r
	}
	return m
}

// nodeOf reads one row without failing the test (for polling conditions,
// where the database may still be coming back).
func nodeOf(ctx context.Context, s Store, id string) (Row, bool) {
	rows, err := s.Nodes(ctx)
	if err != nil {
		return Row{}, false
	}
	for _, r := range rows {
		if r.NodeID == id {
			return r, true
		}
	}
	return Row{}, false
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !testsupport.Eventually(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

func TestMigrationsAreIdempotentAndConcurrentSafe(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *testDB) {
		if db.dialect == "sqlite" {
			// The file is one node's alone: a second opener is refused,
			// naming the file, once busy_timeout is over.
			first, err := Open(t.Context(), db.opts)
			if err != nil {
				t.Fatal(err)
			}
			if s, err := Open(t.Context(), db.opts); err == nil {
				s.Close()
				t.Errorf("a second opener got %s while the first held it", db.opts.Path)
			} else if !strings.Contains(err.Error(), "held by another process") || !strings.Contains(err.Error(), db.opts.Path) {
				t.Errorf("second opener: %v; want it held by another process, naming the file", err)
			}
			first.Close()
			checkMigrations(t, db)
			return
		}
		// Three nodes start at once against one empty database.
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Go(func() {
				s, err := Open(t.Context(), db.opts)
				if err == nil {
					err = s.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("concurrent open: %v", err)
		}
		checkMigrations(t, db)
	})
}

// checkMigrations opens db twice more: nothing is left to do, every
// migration is recorded once, and the tables are there, empty.
func checkMigrations(t *testing.T, db *testDB) {
	t.Helper()
	want, err := migrations(db.dialect)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		s, err := Open(t.Context(), db.opts)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		applied, err := s.(interface {
			appliedMigrations(context.Context) (map[int]bool, error)
		}).appliedMigrations(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(applied) != len(want) {
			t.Errorf("schema_migrations has %d rows, want %d", len(applied), len(want))
		}
		for _, m := range want {
			if !applied[m.version] {
				t.Errorf("migration %s not recorded", m.name)
			}
		}
		if rows, err := s.Nodes(t.Context()); err != nil || len(rows) != 0 {
			t.Errorf("nodes on a fresh database = %v, %v; want none", rows, err)
		}
		s.Close()
	}
}

func TestDialectsHaveTheSameMigrations(t *testing.T) {
	pg, err := migrations("postgresql")
	if err != nil {
		t.Fatal(err)
	}
	lite, err := migrations("sqlite")
	if err != nil {
		t.Fatal(err)
	}
	if len(pg) != len(lite) {
		t.Fatalf("postgresql has %d migrations, sqlite %d", len(pg), len(lite))
	}
	for i := range pg {
		if pg[i].name != lite[i].name {
			t.Errorf("migration %d: postgresql %s, sqlite %s", i, pg[i].name, lite[i].name)
		}
	}
}

func TestUpsertAndReadNodes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t)
		ctx := t.Context()
		b := nodeRow("gw_2:8080-mft-gw-0", StatusPassive, base.Add(time.Second)) // never ACTIVE: NULL
		a := nodeRow("gw_1:8080-mft-gw-0", StatusActive, base.Add(2*time.Second))
		a.LastActiveDate = base.Add(2 * time.Second)
		c := nodeRow("GW_3:8080-mft-gw-0", StatusUnlicensed, base) // upper case sorts first in byte order
		c.Licensed = false
		for _, r := range []Row{b, a, c} {
			if err := s.UpsertNode(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := []Row{stored(c), stored(a), stored(b)}; !reflect.DeepEqual(got, want) {
			t.Fatalf("nodes:\n got %+v\nwant %+v", got, want)
		}
		if !got[2].LastActiveDate.IsZero() {
			t.Errorf("never-active node has last_active_date %v", got[2].LastActiveDate)
		}

		// An update replaces the row; a zero LastActiveDate keeps the stored one.
		a2 := a
		a2.Status, a2.LastUpdate, a2.LastActiveDate, a2.Port = StatusPassive, base.Add(3*time.Second), time.Time{}, 9090
		if err := s.UpsertNode(ctx, a2); err != nil {
			t.Fatal(err)
		}
		want := stored(a2)
		want.LastActiveDate = norm(a.LastActiveDate)
		if got := nodesByID(t, s)[a.NodeID]; !reflect.DeepEqual(got, want) {
			t.Errorf("after update:\n got %+v\nwant %+v", got, want)
		}

		for _, bad := range []Row{{Status: StatusActive}, {NodeID: "x", Status: "RUNNING"}} {
			if err := s.UpsertNode(ctx, bad); !errors.Is(err, ErrInvalidRow) {
				t.Errorf("upsert %+v: err = %v, want ErrInvalidRow", bad, err)
			}
		}
	})
}

func TestMarkOffline(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t)
		ctx := t.Context()
		dead := nodeRow("dead", StatusPassive, base)
		bystander := nodeRow("bystander", StatusPassive, base)
		back := nodeRow("back", StatusPassive, base.Add(10*time.Second)) // wrote its row after the mark
		for _, r := range []Row{dead, bystander, back} {
			if err := s.UpsertNode(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		at := base.Add(5 * time.Second)
		if err := s.MarkOffline(ctx, []string{"dead", "back", "unknown"}, at); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkOffline(ctx, nil, at); err != nil {
			t.Errorf("no ids: %v", err)
		}
		got := nodesByID(t, s)
		wantDead := stored(dead)
		wantDead.Status, wantDead.LastUpdate = StatusOffline, norm(at)
		for name, want := range map[string]Row{"dead": wantDead, "bystander": stored(bystander), "back": stored(back)} {
			if !reflect.DeepEqual(got[name], want) {
				t.Errorf("%s:\n got %+v\nwant %+v", name, got[name], want)
			}
		}
		if _, ok := got["unknown"]; ok {
			t.Error("MarkOffline created a row for an unknown id")
		}

		// Marking again keeps the time the node went OFFLINE.
		if err := s.MarkOffline(ctx, []string{"dead"}, at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if got := nodesByID(t, s)["dead"]; !got.LastUpdate.Equal(norm(at)) {
			t.Errorf("second mark moved last_update to %v, want %v", got.LastUpdate, norm(at))
		}
	})
}

func TestTransferHistory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t)
		ctx := t.Context()
		entry := func(id string, status string, start time.Time) HistoryEntry {
			return HistoryEntry{
				ID: id, IsServer: true, IsSend: false, Protocol: "sftp", Rule: "inbound",
				Account: "alice", Agent: "sftp-main", LocalPath: "/in/" + id, RemotePath: id,
				Filesize: 1 << 40, Status: status, Step: "FINALIZATION", Progress: 1 << 40,
				Start: start, Stop: start.Add(time.Minute), NodeID: "gw_1",
			}
		}
		e1 := entry("t1", "DONE", base)
		e2 := entry("t2", "ERROR", base.Add(time.Hour))
		e2.ErrorCode, e2.ErrorDetails, e2.Stop = "TeConnection", "connection reset", time.Time{}
		e3 := entry("t3", "DONE", base.Add(2*time.Hour))
		for _, e := range []HistoryEntry{e1, e2} {
			if err := s.AddHistory(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		// A batch, in one transaction: t1 again (a replay after failover).
		if err := s.AddHistory(ctx, e3, e1); err != nil {
			t.Fatal(err)
		}
		// A batch with an invalid entry writes none of it.
		if err := s.AddHistory(ctx, entry("t4", "DONE", base.Add(3*time.Hour)), HistoryEntry{}); err == nil {
			t.Error("a batch with an entry without ID was written")
		}
		if err := s.AddHistory(ctx); err != nil {
			t.Errorf("an empty batch: %v", err)
		}
		want := func(es ...HistoryEntry) []HistoryEntry {
			for i := range es {
				es[i].Start, es[i].Stop = norm(es[i].Start), norm(es[i].Stop)
			}
			return es
		}
		for _, tc := range []struct {
			q    HistoryQuery
			want []HistoryEntry
		}{
			{HistoryQuery{}, want(e3, e2, e1)},
			{HistoryQuery{Status: "DONE"}, want(e3, e1)},
			{HistoryQuery{Limit: 1, Offset: 1}, want(e2)},
		} {
			got, err := s.History(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("history %+v:\n got %+v\nwant %+v", tc.q, got, tc.want)
			}
		}
	})
}

// TestHistoryFilters: each filter of a history query, alone and combined
// with the others and with paging, on both back-ends.
func TestHistoryFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t)
		ctx := t.Context()
		// Ten transfers a minute apart (h0 the oldest): server transfers
		// on sftp-main by alice and bob, client ones with the partner
		// bank (as gw or alice), and one client transfer with a partner
		// named like the server, which a server's name must not match.
		type row struct {
			rule, agent, account, status string
			server                       bool
		}
		rows := []row{
			{"inbound", "sftp-main", "alice", "DONE", true},
			{"inbound", "sftp-main", "bob", "ERROR", true},
			{"push", "bank", "gw", "DONE", false},
			{"push", "bank", "alice", "CANCELLED", false},
			{"inbound", "sftp-main", "alice", "DONE", true},
			{"pull", "bank", "gw", "DONE", false},
			{"push", "sftp-main", "gw", "DONE", false},
			{"inbound", "sftp-main", "bob", "DONE", true},
			{"push", "bank", "gw", "ERROR", false},
			{"pull", "bank", "alice", "DONE", false},
		}
		h := make([]HistoryEntry, len(rows))
		for i, r := range rows {
			h[i] = HistoryEntry{ID: fmt.Sprintf("h%d", i), IsServer: r.server, IsSend: !r.server && r.rule == "push", Protocol: "sftp",
				Rule: r.rule, Account: r.account, Agent: r.agent, Status: r.status, Step: "FINALIZATION", Filesize: 10, Progress: 10,
				Start: base.Add(time.Duration(i) * time.Minute), Stop: base.Add(time.Duration(i)*time.Minute + time.Second), NodeID: "gw_1"}
			if err := s.AddHistory(ctx, h[i]); err != nil {
				t.Fatal(err)
			}
		}
		// at is h[i]'s start as stored (in microseconds).
		at := func(i int) time.Time { return norm(h[i].Start) }
		for _, tc := range []struct {
			name string
			q    HistoryQuery
			want []int // newest first
		}{
			{"all", HistoryQuery{}, []int{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
			{"rule", HistoryQuery{Rule: "push"}, []int{8, 6, 3, 2}},
			{"rule is exact", HistoryQuery{Rule: "pus"}, nil},
			{"partner", HistoryQuery{Partner: "bank"}, []int{9, 8, 5, 3, 2}},
			{"partner is never a server", HistoryQuery{Partner: "sftp-main"}, []int{6}},
			{"account", HistoryQuery{Account: "alice"}, []int{9, 4, 3, 0}},
			{"since is inclusive", HistoryQuery{Since: at(7)}, []int{9, 8, 7}},
			{"until is exclusive", HistoryQuery{Until: at(2)}, []int{1, 0}},
			{"since and until", HistoryQuery{Since: at(3), Until: at(6)}, []int{5, 4, 3}},
			{"since in another zone", HistoryQuery{Since: at(8).In(time.FixedZone("EST", -5*3600))}, []int{9, 8}},
			// A bound finer than the stored microseconds: h8 started
			// before it, h9 after.
			{"since below a microsecond", HistoryQuery{Since: norm(at(8)).Add(time.Nanosecond)}, []int{9}},
			{"until below a microsecond", HistoryQuery{Until: norm(at(1)).Add(time.Nanosecond)}, []int{1, 0}},
			{"empty range", HistoryQuery{Since: at(4), Until: at(4)}, nil},
			{"status and rule", HistoryQuery{Status: "DONE", Rule: "push"}, []int{6, 2}},
			{"partner and account", HistoryQuery{Partner: "bank", Account: "alice"}, []int{9, 3}},
			{"rule, account and status", HistoryQuery{Rule: "inbound", Account: "bob", Status: "DONE"}, []int{7}},
			{"partner and range", HistoryQuery{Partner: "bank", Since: at(3), Until: at(9)}, []int{8, 5, 3}},
			{"every filter", HistoryQuery{Status: "DONE", Rule: "pull", Partner: "bank", Account: "gw", Since: at(1), Until: at(9)}, []int{5}},
			{"filter and page", HistoryQuery{Partner: "bank", Limit: 2, Offset: 1}, []int{8, 5}},
			{"filter past the end", HistoryQuery{Rule: "push", Offset: 4}, nil},
			{"range and page", HistoryQuery{Since: at(2), Limit: 3, Offset: 3}, []int{6, 5, 4}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.History(ctx, tc.q)
				if err != nil {
					t.Fatal(err)
				}
				var ids, want []string
				for _, g := range got {
					ids = append(ids, g.ID)
				}
				for _, i := range tc.want {
					want = append(want, h[i].ID)
				}
				if !reflect.DeepEqual(ids, want) {
					t.Errorf("history %+v: %v, want %v", tc.q, ids, want)
				}
			})
		}
	})
}

func newTestWriter(t *testing.T, s Store) *Writer {
	w := NewWriter(s, slog.New(slog.NewTextHandler(t.Output(), nil)))
	w.opTimeout = time.Second // the sqlite gate hangs calls: give up sooner
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func TestWriterCatchesUpAfterOutage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t)
		w := newTestWriter(t, s)
		self := func(i int) Row { return nodeRow("self", StatusPassive, base.Add(time.Duration(i)*time.Second)) }
		if err := s.UpsertNode(t.Context(), nodeRow("peer", StatusPassive, base)); err != nil {
			t.Fatal(err)
		}

		w.Submit(self(1))
		waitFor(t, "the first row", 10*time.Second, func() bool {
			r, ok := nodeOf(t.Context(), s, "self")
			return ok && w.Healthy() && r == stored(self(1))
		})

		db.down(t)
		outage := time.Now()
		w.Submit(self(2))
		waitFor(t, "the writer to notice the outage", 10*time.Second, func() bool { return !w.Healthy() })
		if w.LastError() == nil {
			t.Error("unhealthy writer has no LastError")
		}
		other := func(i int) Row { return nodeRow("other", StatusActive, base.Add(time.Duration(i)*time.Second)) }
		for i := 3; i <= 50; i++ {
			w.Submit(self(i))
			w.Submit(other(i)) // each node's latest row is kept
		}
		w.SubmitOffline([]string{"peer"}, base.Add(30*time.Second))

		db.up(t)
		back := time.Now()
		waitFor(t, "the writer to catch up", 20*time.Second, func() bool {
			if !w.Healthy() {
				return false
			}
			rows, err := s.Nodes(t.Context())
			if err != nil || len(rows) != 3 {
				return false
			}
			other50, peer, self50 := rows[0], rows[1], rows[2]
			return peer.Status == StatusOffline && self50 == stored(self(50)) && other50 == stored(other(50))
		})
		t.Logf("outage %v, caught up %v after the database came back",
			back.Sub(outage).Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
	})
}

func TestSubmitNeverBlocksWhileDatabaseIsDown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t)
		w := newTestWriter(t, s)
		db.down(t)
		w.Submit(nodeRow("self", StatusPassive, base))
		waitFor(t, "the writer to be failing", 10*time.Second, func() bool { return !w.Healthy() })

		const n = 20000
		var worst time.Duration
		start := time.Now()
		for i := range n {
			t0 := time.Now()
			w.Submit(nodeRow("self", StatusPassive, base.Add(time.Duration(i)*time.Millisecond)))
			if i%100 == 0 {
				w.SubmitOffline([]string{fmt.Sprint("peer-", i%7)}, base.Add(time.Duration(i)*time.Millisecond))
			}
			worst = max(worst, time.Since(t0))
		}
		total := time.Since(start)
		t.Logf("%d submits in %v (worst %v) while the database was down", n, total.Round(time.Microsecond), worst)
		// A Submit that waited for the database would take the writer's
		// operation timeout (1s) at least once.
		if worst >= time.Second || total > 10*time.Second {
			t.Errorf("Submit blocked: worst %v, total %v for %d calls", worst, total, n)
		}

		db.up(t)
		last := stored(nodeRow("self", StatusPassive, base.Add((n-1)*time.Millisecond)))
		waitFor(t, "the latest row after the outage", 20*time.Second, func() bool {
			r, ok := nodeOf(t.Context(), s, "self")
			return ok && w.Healthy() && r == last
		})
	})
}

func TestWriterFlushAtShutdown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t)
		w := NewWriter(s, slog.New(slog.NewTextHandler(t.Output(), nil))) // no Run: shutdown after it stopped
		final := nodeRow("self", StatusOffline, base)
		w.Submit(final)
		if err := w.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := nodesByID(t, s)["self"]; got != stored(final) {
			t.Errorf("got %+v, want %+v", got, stored(final))
		}

		db.down(t)
		w.Submit(nodeRow("self", StatusOffline, base.Add(time.Second)))
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		t0 := time.Now()
		if err := w.Flush(ctx); err == nil {
			t.Error("Flush succeeded with the database down")
		}
		// Without the context it would wait for the 5s operation timeout.
		if d := time.Since(t0); d >= 4*time.Second {
			t.Errorf("Flush took %v with a 200ms context", d)
		}
		db.up(t)
	})
}

func TestPostgresOutageAtStartup(t *testing.T) {
	t.Parallel()
	pg := testsupport.StartPostgres(t)
	opts := Options{Type: "postgresql", Address: pg.Addr, Name: pg.DB, User: pg.User, Password: pg.Password}
	pg.Stop(t)

	t0 := time.Now()
	if s, err := Open(t.Context(), opts); err == nil {
		s.Close()
		t.Fatal("Open succeeded with the database down")
	} else {
		t.Logf("Open with the database down: %v after %v", err, time.Since(t0).Round(time.Millisecond))
	}

	s, err := OpenLazy(t.Context(), opts)
	if err != nil {
		t.Fatalf("OpenLazy with the database down: %v", err)
	}
	defer s.Close()
	if _, err := s.Nodes(t.Context()); err == nil {
		t.Fatal("Nodes succeeded with the database down")
	}

	pg.Start(t)
	row := nodeRow("self", StatusPassive, base)
	waitFor(t, "the lazily opened store to migrate and write", 10*time.Second, func() bool {
		return s.UpsertNode(t.Context(), row) == nil
	})
	if got := nodesByID(t, s)["self"]; got != stored(row) {
		t.Errorf("got %+v, want %+v", got, stored(row))
	}
}

func TestPostgresTablesDroppedUnderTheCluster(t *testing.T) {
	t.Parallel()
	pg := testsupport.StartPostgres(t)
	s, err := Open(t.Context(), Options{Type: "postgresql", Address: pg.Addr, Name: pg.DB, User: pg.User, Password: pg.Password})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := newTestWriter(t, s)
	w.Submit(nodeRow("self", StatusPassive, base))
	waitFor(t, "the first row", 10*time.Second, func() bool { return w.Healthy() })

	// A database recreated empty (say, a container without its volume).
	pg.Superuser(t, "DROP TABLE udmg_nodes, udmg_transfer_history, schema_migrations")
	row := nodeRow("self", StatusPassive, base.Add(time.Second))
	w.Submit(row)
	waitFor(t, "the row in the recreated tables", 10*time.Second, func() bool {
		r, ok := nodeOf(t.Context(), s, "self")
		return ok && r == stored(row)
	})
}

// TestPostgresUnansweringServerDoesNotBlock points the store at a server
// that accepts connections and never answers, the outage timeouts exist for.
func TestPostgresUnansweringServerDoesNotBlock(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	opts := Options{Type: "postgresql", Address: l.Addr().String(), Name: "udmg", User: "udmg", Password: "x"}

	const bound = 10 * time.Second // pgOpTimeout plus slack for a loaded machine; a hang is forever
	t0 := time.Now()
	if s, err := Open(context.Background(), opts); err == nil {
		s.Close()
		t.Fatal("Open succeeded against a silent server")
	}
	d := time.Since(t0)
	t.Logf("Open failed after %v against a silent server", d.Round(time.Millisecond))
	if d > bound {
		t.Errorf("Open took %v against a silent server, want under %v", d, bound)
	}

	s, err := OpenLazy(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, op := range map[string]func(context.Context) error{
		"UpsertNode": func(ctx context.Context) error { return s.UpsertNode(ctx, nodeRow("self", StatusPassive, base)) },
		"Nodes":      func(ctx context.Context) error { _, err := s.Nodes(ctx); return err },
	} {
		t0 := time.Now()
		if err := op(context.Background()); err == nil {
			t.Fatalf("%s succeeded against a silent server", name)
		}
		d := time.Since(t0)
		t.Logf("%s failed after %v against a silent server", name, d.Round(time.Millisecond))
		if d > bound {
			t.Errorf("%s took %v against a silent server, want under %v", name, d, bound)
		}
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"unknown type", Options{Type: "mysql"}},
		{"sqlite without path", Options{Type: "sqlite"}},
		{"postgresql without address", Options{Type: "postgresql", Name: "udmg", User: "u"}},
		{"certificate without key", Options{Type: "postgresql", Address: "db:5432", Name: "udmg", User: "u", TLSCert: "c.pem"}},
	} {
		if s, err := OpenLazy(t.Context(), tc.o); err == nil {
			s.Close()
			t.Errorf("%s: accepted", tc.name)
		}
	}

	cfg, err := pgPoolConfig(Options{Address: "db.example:6432", Name: "udmg", User: "udmg_user", Password: `p'a\ss word`})
	if err != nil {
		t.Fatal(err)
	}
	cc := cfg.ConnConfig
	if cc.Host != "db.example" || cc.Port != 6432 || cc.Database != "udmg" || cc.User != "udmg_user" || cc.Password != `p'a\ss word` {
		t.Errorf("parsed %s:%d db=%s user=%s password=%q", cc.Host, cc.Port, cc.Database, cc.User, cc.Password)
	}
	if cc.ConnectTimeout != pgConnectTimeout || cc.RuntimeParams["statement_timeout"] != pgStatementTimeout {
		t.Errorf("timeouts: connect %v, statement %q", cc.ConnectTimeout, cc.RuntimeParams["statement_timeout"])
	}
	if cfg, err := pgPoolConfig(Options{Address: "db.example", Name: "n", User: "u"}); err != nil || cfg.ConnConfig.Port != 5432 {
		t.Errorf("address without port: %v, port %d", err, cfg.ConnConfig.Port)
	}
}

func TestPostgresClientCertificate(t *testing.T) {
	certFile, keyFile := writeClientCert(t)
	o := Options{Address: "db.example:5432", Name: "udmg", User: "udmg_user", TLSCert: certFile, TLSKey: keyFile}
	cfg, err := pgPoolConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	cc := cfg.ConnConfig
	if cc.TLSConfig == nil || len(cc.TLSConfig.Certificates) != 1 {
		t.Fatalf("TLS config %+v: want the client certificate", cc.TLSConfig)
	}
	if len(cc.Fallbacks) != 0 {
		t.Errorf("%d fallbacks: sslmode=require must not fall back to plain text", len(cc.Fallbacks))
	}
	o.TLSKey = filepath.Join(t.TempDir(), "missing.key")
	if _, err := pgPoolConfig(o); err == nil {
		t.Error("a missing key file was accepted")
	}
}

func writeClientCert(t *testing.T) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "udmg_user"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// gate simulates an unanswering database in front of a store.
type gate struct {
	mu     sync.Mutex
	closed chan struct{} // non-nil while down; closed when back up
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed == nil {
		g.closed = make(chan struct{})
	}
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
}

func (g *gate) pass(ctx context.Context) error {
	g.mu.Lock()
	ch := g.closed
	g.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("database not answering: %w", ctx.Err())
	}
}

type gatedStore struct {
	Store
	gate *gate
}

func (s *gatedStore) UpsertNode(ctx context.Context, r Row) error {
	if err := s.gate.pass(ctx); err != nil {
		return err
	}
	return s.Store.UpsertNode(ctx, r)
}

func (s *gatedStore) MarkOffline(ctx context.Context, ids []string, at time.Time) error {
	if err := s.gate.pass(ctx); err != nil {
		return err
	}
	return s.Store.MarkOffline(ctx, ids, at)
}

func (s *gatedStore) Nodes(ctx context.Context) ([]Row, error) {
	if err := s.gate.pass(ctx); err != nil {
		return nil, err
	}
	return s.Store.Nodes(ctx)
}
