package cluster

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// writeBoltLog makes an earlier release's DataDir/raft.db: a term, a vote
// and entries first..last (a compacted log starts above 1).
func writeBoltLog(t *testing.T, path string, first, last uint64) {
	t.Helper()
	s, err := raftboltdb.New(raftboltdb.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("LastVoteTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-b")); err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := first; i <= last; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1 + i/50, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry %d", i))})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
}

// checkLog fails unless s holds the term, the vote and entries first..last
// that writeBoltLog wrote.
func checkLog(t *testing.T, s *logStore, first, last uint64) {
	t.Helper()
	if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
		t.Errorf("CurrentTerm = %d, %v; want 7", term, err)
	}
	if term, err := s.GetUint64([]byte("LastVoteTerm")); err != nil || term != 7 {
		t.Errorf("LastVoteTerm = %d, %v; want 7", term, err)
	}
	if cand, err := s.Get([]byte("LastVoteCand")); err != nil || string(cand) != "node-b" {
		t.Errorf("LastVoteCand = %q, %v; want node-b", cand, err)
	}
	if f, _ := s.FirstIndex(); f != first {
		t.Errorf("FirstIndex = %d, want %d", f, first)
	}
	if l, _ := s.LastIndex(); l != last {
		t.Errorf("LastIndex = %d, want %d", l, last)
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil || l.Term != 1+i/50 || string(l.Data) != fmt.Sprintf("entry %d", i) {
			t.Fatalf("entry %d: %+v, %v", i, l, err)
		}
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestLogStoreMovesBoltLog: a DataDir of an earlier release (raft.db) is
// moved into raft-wal at the first start, with its term, vote and every
// entry; raft.db becomes a placeholder that bbolt (an older release)
// refuses, the original is kept, and the next start opens raft-wal as it
// is, with what was appended since.
func TestLogStoreMovesBoltLog(t *testing.T) {
	dir := t.TempDir()
	writeBoltLog(t, filepath.Join(dir, boltName), 31, 260)

	s, err := openLogStore(dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	checkLog(t, s, 31, 260)
	if err := s.StoreLogs([]*raft.Log{{Index: 261, Term: 9, Type: raft.LogCommand, Data: []byte("after")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	if b, err := os.ReadFile(filepath.Join(dir, boltName)); err != nil || !bytes.Equal(b, placeholder) {
		t.Fatalf("raft.db after the move: %q, %v; want the placeholder", b, err)
	}
	if _, err := bbolt.Open(filepath.Join(dir, boltName), 0o600, &bbolt.Options{Timeout: time.Second}); err == nil {
		t.Fatal("bbolt (an older release) opens the placeholder raft.db")
	}
	if !isBoltDB(filepath.Join(dir, boltKeptName)) {
		t.Fatalf("%s not kept", boltKeptName)
	}
	if _, err := os.Stat(filepath.Join(dir, walDirName+".migrating")); !os.IsNotExist(err) {
		t.Fatalf("the copy's directory is left: %v", err)
	}

	s, err = openLogStore(dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var l raft.Log
	if err := s.GetLog(261, &l); err != nil || string(l.Data) != "after" {
		t.Fatalf("entry 261 after a restart: %+v, %v (moved again from raft.db.before-wal?)", l, err)
	}
}

// TestLogStoreMoveCutShort: a start cut after raft.db was renamed aside
// but before raft-wal was in place (a half copy in raft-wal.migrating)
// copies again from raft.db.before-wal.
func TestLogStoreMoveCutShort(t *testing.T) {
	dir := t.TempDir()
	writeBoltLog(t, filepath.Join(dir, boltKeptName), 1, 120)
	if err := os.MkdirAll(filepath.Join(dir, walDirName+".migrating"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, walDirName+".migrating", "00000000000000000001-0000000000000001.wal"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := openLogStore(dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkLog(t, s, 1, 120)
}

// TestLogStoreFreshAndLocked: a new DataDir gets an empty raft-wal and the
// placeholder; a second store on the same DataDir (a second udmg-server)
// is refused (not left waiting), naming the DataDir, and gets it once the first is
// closed.
func TestLogStoreFreshAndLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := openLogStore(dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := s.LastIndex(); l != 0 {
		t.Errorf("fresh LastIndex = %d", l)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, boltName)); !bytes.Equal(b, placeholder) {
		t.Errorf("fresh raft.db = %q, want the placeholder", b)
	}
	if _, err := openLogStore(dir, quietLog()); err == nil || !strings.Contains(err.Error(), "in use by another udmg-server") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second store on one DataDir: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = openLogStore(dir, quietLog())
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	s.Close()
}

// countFSM is the least state machine: the count of entries applied.
type countFSM struct{ n atomic.Uint64 }

func (f *countFSM) Apply(*raft.Log) any { f.n.Add(1); return nil }
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) {
	return countSnap(f.n.Load()), nil
}
func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var n uint64
	if _, err := fmt.Fscan(rc, &n); err != nil {
		return err
	}
	f.n.Store(n)
	return nil
}

type countSnap uint64

func (s countSnap) Persist(sink raft.SnapshotSink) error {
	if _, err := fmt.Fprint(sink, uint64(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}
func (countSnap) Release() {}

// TestLogStoreTakesInstalledSnapshot: raft-wal refuses a gap in the log,
// so a follower that missed more than the leader keeps (TrailingLogs) and
// is sent a snapshot must have its log emptied by raft first, which raft
// does only for a store that says IsMonotonic, through the node's
// arrivalLog wrapper too. The follower here, on raft-wal behind
// arrivalLog, catches up by the snapshot and goes on taking entries.
func TestLogStoreTakesInstalledSnapshot(t *testing.T) {
	if m, ok := raft.LogStore(arrivalLog{LogStore: &logStore{}}).(raft.MonotonicLogStore); !ok || !m.IsMonotonic() {
		t.Fatal("arrivalLog hides the store's IsMonotonic from raft")
	}
	conf := func(id string) *raft.Config {
		c := raft.DefaultConfig()
		c.LocalID = raft.ServerID(id)
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
		c.TrailingLogs, c.SnapshotThreshold, c.SnapshotInterval = 10, 1<<30, time.Hour
		c.Logger = newHCLogger(quietLog(), "raft")
		return c
	}
	type member struct {
		r     *raft.Raft
		fsm   *countFSM
		trans *raft.InmemTransport
	}
	start := func(id string, logs raft.LogStore, stable raft.StableStore) member {
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(id))
		m := member{fsm: &countFSM{}, trans: trans}
		r, err := raft.NewRaft(conf(id), m.fsm, logs, stable, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatal(err)
		}
		_ = addr
		m.r = r
		t.Cleanup(func() { r.Shutdown().Error() })
		return m
	}
	leaderStore := raft.NewInmemStore()
	leader := start("a", leaderStore, leaderStore)
	ws, err := openLogStore(t.TempDir(), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	// arrivalLog without a node: it is here for its IsMonotonic; a
	// wrapper of the same shape passes StoreLogs straight on.
	follower := start("b", passLog{arrivalLog{LogStore: ws}}, ws)
	leader.trans.Connect("b", follower.trans)
	follower.trans.Connect("a", leader.trans)
	if err := leader.r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "a", Address: "a"}}}).Error(); err != nil {
		t.Fatal(err)
	}
	apply := func(n int) {
		for i := 0; i < n; i++ {
			if err := leader.r.Apply([]byte("x"), 5*time.Second).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !eventually(10*time.Second, func() bool { return leader.r.State() == raft.Leader }) {
		t.Fatal("no leader")
	}
	// A non-voter: cut off, it starts no election.
	if err := leader.r.AddNonvoter("b", "b", 0, 0).Error(); err != nil {
		t.Fatal(err)
	}
	apply(20)
	if !eventually(10*time.Second, func() bool { return follower.fsm.n.Load() == 20 }) {
		t.Fatalf("follower applied %d of 20", follower.fsm.n.Load())
	}
	leader.trans.Disconnect("b")
	follower.trans.Disconnect("a")
	apply(200)
	if err := leader.r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if first, _ := leaderStore.FirstIndex(); first <= 25 {
		t.Fatalf("the leader kept its log from %d: the follower would not need the snapshot", first)
	}
	leader.trans.Connect("b", follower.trans)
	follower.trans.Connect("a", leader.trans)
	apply(30)
	if !eventually(30*time.Second, func() bool { return follower.fsm.n.Load() == 250 }) {
		t.Fatalf("follower at %d of 250 after the snapshot (last index %d)", follower.fsm.n.Load(), follower.r.LastIndex())
	}
	if last, _ := ws.LastIndex(); last < 250 {
		t.Errorf("the follower's raft-wal ends at %d", last)
	}
}

// passLog is arrivalLog's shape without its node: writes go straight to
// the store.
type passLog struct{ arrivalLog }

func (p passLog) StoreLog(l *raft.Log) error        { return p.LogStore.StoreLog(l) }
func (p passLog) StoreLogs(ls []*raft.Log) error    { return p.LogStore.StoreLogs(ls) }
func (p passLog) DeleteRange(min, max uint64) error { return p.LogStore.DeleteRange(min, max) }

func eventually(d time.Duration, ok func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return true
		}
	}
	return ok()
}

// TestLogStoreReopensAfterTailTruncation is raft-wal#31, which the e2e
// suite hit on v0.4.0 (a node killed after raft cleared a conflicting
// suffix could not start again: "sealed segment has no index block"):
// after a tail truncation and a restart, every entry left is readable and
// the log goes on.
func TestLogStoreReopensAfterTailTruncation(t *testing.T) {
	dir := t.TempDir()
	s, err := openLogStore(dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 40; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry %d", i))})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(31, 40); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs([]*raft.Log{{Index: 31, Term: 2, Type: raft.LogCommand, Data: []byte("entry 31 of term 2")}}); err != nil {
		t.Fatal(err)
	}
	// No Close: the process is killed.
	s.meta.Close()
	s.lock.Close()
	s, err = openLogStore(dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := uint64(1); i <= 31; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d after the restart: %v", i, err)
		}
	}
	if err := s.StoreLogs([]*raft.Log{{Index: 32, Term: 2, Type: raft.LogCommand, Data: []byte("entry 32")}}); err != nil {
		t.Fatalf("append after the restart: %v", err)
	}
}
