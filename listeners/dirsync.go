package listeners

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Lingers of the directory fsyncs nobody waits for yet (see groupSync):
// a staging file's name, asked for at its create and waited for once its
// data is synced; and a rename after the client heard, which only the
// engine's archiving waits for (Placer).
const (
	nameLinger   = time.Millisecond
	renameLinger = 10 * time.Millisecond
)

// dirSyncs shares the directory fsyncs of concurrent uploads: sixteen
// sessions putting files into one directory need one fsync of it per
// round, not sixteen, and a rename's fsync rides on the round that the
// next upload's name needs anyway.
var dirSyncs = &groupSync{keys: map[dirKey]*syncKey{}}

// dirKey names a directory by what it is (device and inode), not by its
// path: a directory renamed while an upload in it runs keeps its key, and
// a new one of the old name gets another.
type dirKey struct {
	dev, ino uint64
	path     string // where the platform has no inode numbers
}

// SyncDir fsyncs directory dir of root, so that a create or a rename in
// it survives a crash of the host; it returns once an fsync that started
// after its call has ended, one shared with the callers syncing the same
// directory at the time (see dirSyncs).
func SyncDir(root *os.Root, dir string) error {
	key, err := keyOf(root, dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return dirSyncs.ask(key, openDir(root, dir), 0).wait()
}

// keyOf is the key of directory dir of root.
func keyOf(root *os.Root, dir string) (dirKey, error) {
	fi, err := root.Stat(dir)
	if err != nil {
		return dirKey{}, err
	}
	if !fi.IsDir() {
		return dirKey{}, &fs.PathError{Op: "stat", Path: dir, Err: syscall.ENOTDIR}
	}
	return dirKeyOf(fi, filepath.Join(root.Name(), filepath.FromSlash(dir))), nil
}

// openDir opens directory dir of root for a round of fsyncs.
func openDir(root *os.Root, dir string) func() (syncer, error) {
	return func() (syncer, error) {
		d, err := root.Open(dir)
		if err != nil {
			return nil, fmt.Errorf("sync directory %s: %w", dir, err)
		}
		return d, nil
	}
}

// syncer is what a round fsyncs, and closes after (an *os.File).
type syncer interface {
	Name() string
	Sync() error
	Close() error
}

// groupSync runs the fsyncs of each key in rounds, one at a time. A caller
// asks for an fsync that starts after its call: it joins the key's next
// round, which starts once the running one (if any) has ended and either
// somebody hurries it or the earliest linger of its callers is over; the
// first caller of a round gives it its fsync (a directory it opened), and
// every caller of the round shares its error. A caller that needs the
// fsync now asks with no linger; one that can wait lets its fsync ride on
// a round that somebody else needs.
type groupSync struct {
	mu   sync.Mutex
	keys map[dirKey]*syncKey
}

// syncKey is one key's rounds; it is forgotten when neither runs.
type syncKey struct {
	running, next *syncRound
}

type syncRound struct {
	s     syncer // synced and closed once
	done  chan struct{}
	err   error
	due   bool      // start once the running round has ended
	by    time.Time // the earliest linger of its callers ends
	timer *time.Timer
}

// syncTicket is a caller's place in a round.
type syncTicket struct {
	g   *groupSync
	key dirKey
	k   *syncKey
	r   *syncRound // nil: err
	err error
}

// ask joins the next round of key, to start within linger (0: now).
// open is called, outside the lock, when the caller starts a round: the
// round owns what it opens.
func (g *groupSync) ask(key dirKey, open func() (syncer, error), linger time.Duration) *syncTicket {
	g.mu.Lock()
	k := g.keys[key]
	if k == nil || k.next == nil {
		g.mu.Unlock()
		s, err := open()
		if err != nil {
			return &syncTicket{err: err}
		}
		g.mu.Lock()
		if k = g.keys[key]; k == nil {
			k = &syncKey{}
			g.keys[key] = k
		}
		if k.next == nil {
			k.next = &syncRound{s: s, done: make(chan struct{})}
		} else {
			// Another caller started the round meanwhile: its fsync
			// serves this one too.
			_ = s.Close()
		}
	}
	r := k.next
	t := &syncTicket{g: g, key: key, k: k, r: r}
	switch by := time.Now().Add(linger); {
	case r.due:
	case linger <= 0:
		r.due = true
	case r.timer == nil:
		r.by, r.timer = by, time.AfterFunc(linger, func() { g.hurry(key, k, r) })
	case by.Before(r.by):
		r.by = by
		r.timer.Reset(linger)
	}
	g.startLocked(key, k)
	g.mu.Unlock()
	return t
}

// hurry has the ticket's round start as soon as the running one has
// ended, without waiting for it.
func (t *syncTicket) hurry() {
	if t.r != nil {
		t.g.hurry(t.key, t.k, t.r)
	}
}

// wait returns once the ticket's round has ended, with its error.
func (t *syncTicket) wait() error {
	if t.r == nil {
		return t.err
	}
	<-t.r.done
	return t.r.err
}

func (g *groupSync) hurry(key dirKey, k *syncKey, r *syncRound) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if k.next != r { // started already
		return
	}
	r.due = true
	g.startLocked(key, k)
}

// startLocked starts key's next round, on a goroutine of its own, if it is
// due and none runs.
func (g *groupSync) startLocked(key dirKey, k *syncKey) {
	if r := takeLocked(k); r != nil {
		go g.run(key, k, r)
	}
}

// takeLocked makes k's next round the running one and returns it, if it is
// due and none runs; nil otherwise.
func takeLocked(k *syncKey) *syncRound {
	r := k.next
	if r == nil || !r.due || k.running != nil {
		return nil
	}
	k.running, k.next = r, nil
	if r.timer != nil {
		r.timer.Stop()
	}
	return r
}

// run runs round r of key, and the rounds due after it; it forgets key
// when none is left.
func (g *groupSync) run(key dirKey, k *syncKey, r *syncRound) {
	for r != nil {
		err := r.s.Sync()
		if cerr := r.s.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			r.err = fmt.Errorf("sync directory %s: %w", r.s.Name(), err)
		}
		g.mu.Lock()
		close(r.done)
		k.running = nil
		if r = takeLocked(k); r == nil && k.next == nil {
			delete(g.keys, key)
		}
		g.mu.Unlock()
	}
}
