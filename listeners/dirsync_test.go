package listeners

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeDir is a directory handle whose fsync is fn.
type fakeDir struct {
	fn     func() error
	mu     sync.Mutex
	closed bool
}

func (d *fakeDir) Name() string { return "d" }
func (d *fakeDir) Sync() error  { return d.fn() }
func (d *fakeDir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("closed twice")
	}
	d.closed = true
	return nil
}

func openFake(fn func() error) func() (syncer, error) {
	return func() (syncer, error) { return &fakeDir{fn: fn}, nil }
}

// TestSyncDirGroups: concurrent callers of one directory share fsyncs,
// and each returns only after an fsync that started after its call (what
// it wrote before calling is covered), whether it asked for it now or
// with a linger; a failed fsync is every sharer's error; a key nobody
// waits on is forgotten.
func TestSyncDirGroups(t *testing.T) {
	g := &groupSync{keys: map[dirKey]*syncKey{}}
	key := dirKey{path: "d"}
	var mu sync.Mutex
	written, synced, calls := 0, 0, 0
	fn := func() error {
		mu.Lock()
		covers := written
		calls++
		mu.Unlock()
		time.Sleep(time.Millisecond) // an fsync takes a while: callers pile up
		mu.Lock()
		synced = max(synced, covers)
		mu.Unlock()
		return nil
	}
	const callers, each = 16, 20
	errs := make(chan error, callers)
	for c := range callers {
		go func() {
			for i := range each {
				mu.Lock()
				written++
				mine := written
				mu.Unlock()
				var linger time.Duration // now, as SyncDir
				switch (c + i) % 3 {
				case 1:
					linger = nameLinger
				case 2:
					linger = renameLinger
				}
				if err := g.ask(key, openFake(fn), linger).wait(); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				covered := synced >= mine
				mu.Unlock()
				if !covered {
					errs <- fmt.Errorf("write %d returned before an fsync covered it (synced up to %d)", mine, synced)
					return
				}
			}
			errs <- nil
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if calls >= callers*each {
		t.Errorf("%d fsyncs for %d concurrent calls: none shared", calls, callers*each)
	}
	g.mu.Lock()
	if len(g.keys) != 0 {
		t.Errorf("idle keys kept: %v", g.keys)
	}
	g.mu.Unlock()

	boom := errors.New("disk on fire")
	release := make(chan struct{})
	started := make(chan struct{})
	first := g.ask(key, openFake(func() error { close(started); <-release; return nil }), 0)
	<-started
	// Both join the round after the running one, which fails.
	a := g.ask(key, openFake(func() error { return boom }), time.Hour)
	b := g.ask(key, openFake(func() error { return errors.New("not this round's fsync") }), 0)
	close(release)
	if err := first.wait(); err != nil {
		t.Fatalf("the first round: %v", err)
	}
	for _, tk := range []*syncTicket{a, b} {
		if err := tk.wait(); !errors.Is(err, boom) {
			t.Fatalf("a sharer of the failed fsync got %v", err)
		}
	}
}

// TestSyncDirLinger: an fsync asked for with a linger rides on the next
// round somebody needs now, or runs once hurried, or once its linger is
// over; and nothing opened for a round is left open.
func TestSyncDirLinger(t *testing.T) {
	g := &groupSync{keys: map[dirKey]*syncKey{}}
	key := dirKey{path: "d"}
	var mu sync.Mutex
	var opened []*fakeDir
	syncs := 0
	open := func() (syncer, error) {
		d := &fakeDir{fn: func() error { mu.Lock(); syncs++; mu.Unlock(); return nil }}
		mu.Lock()
		opened = append(opened, d)
		mu.Unlock()
		return d, nil
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return syncs }

	// Rides: an hour's linger ends with the round an impatient caller needs.
	late := g.ask(key, open, time.Hour)
	if err := g.ask(key, open, 0).wait(); err != nil {
		t.Fatal(err)
	}
	if err := late.wait(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Errorf("%d fsyncs for a lingering and an impatient caller of one round, want 1", n)
	}

	// Hurried.
	h := g.ask(key, open, time.Hour)
	h.hurry()
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}

	// Its linger over, with nobody else.
	done := make(chan error, 1)
	go func() { done <- g.ask(key, open, time.Millisecond).wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a round nobody hurried had not run 10 s after its 1 ms linger")
	}
	if n := count(); n != 3 {
		t.Errorf("%d fsyncs, want 3", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, d := range opened {
		if !d.closed {
			t.Errorf("directory handle %d left open", i)
		}
	}
}

// TestDirKey: a directory keeps its key when renamed, and a new one of the
// old name gets another: an upload's fsync is never shared with another
// directory's.
func TestDirKey(t *testing.T) {
	home := t.TempDir()
	root, err := os.OpenRoot(home)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := os.Mkdir(filepath.Join(home, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	before, err := keyOf(root, "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(home, "a"), filepath.Join(home, "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(home, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	moved, err := keyOf(root, "b")
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := keyOf(root, "a")
	if err != nil {
		t.Fatal(err)
	}
	if moved != before {
		t.Errorf("the renamed directory's key changed: %v, then %v", before, moved)
	}
	if fresh == before {
		t.Errorf("a new directory of the old name shares its key %v", fresh)
	}
	if err := os.WriteFile(filepath.Join(home, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(root, "f"); err == nil {
		t.Error("SyncDir of a file: no error")
	}
	if err := SyncDir(root, "b"); err != nil {
		t.Errorf("SyncDir of a directory: %v", err)
	}
}
