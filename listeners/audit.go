package listeners

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// AuditFlushEvery bounds how long an audit line may sit in the buffer.
const AuditFlushEvery = 100 * time.Millisecond

// Audit is the optional write audit ([listeners] WriteAudit): one JSON line
// per storage change this node makes on GatewayHome, with the lease epoch
// the change was checked under and the time it ended on CLOCK_BOOTTIME and
// on the wall clock, so that a chaos campaign can prove that every byte
// landed under a valid lease. Lines look like
//
//	{"node":"n1","epoch":3,"op":"write","path":"/home/alice/.udmg-staging.7.3","off":0,"len":32768,"bootns":…,"unixns":…}
//
// op is write, truncate, create, rename (path is the new name, from the
// old one) or delete; the time is taken once the change is done. A nil
// *Audit records nothing and costs a nil check.
type Audit struct {
	node  string
	epoch func() uint64

	mu  sync.Mutex
	f   *os.File
	w   *bufio.Writer
	err error // first write error, reported by Close

	stop chan struct{}
	done chan struct{}
}

type auditLine struct {
	Node   string `json:"node"`
	Epoch  uint64 `json:"epoch"`
	Op     string `json:"op"`
	Path   string `json:"path"`
	From   string `json:"from,omitempty"`
	Off    int64  `json:"off"`
	Len    int64  `json:"len"`
	BootNs int64  `json:"bootns"`
	UnixNs int64  `json:"unixns"`
}

// OpenAudit appends to the audit file at path for node; epoch gives the
// node's lease epoch (cluster.Node.LeaseRemaining). Every write(2) holds
// whole lines, so several nodes may append to one file (O_APPEND on a
// local disk). Close flushes and stops its flusher.
func OpenAudit(path, node string, epoch func() uint64) (*Audit, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("write audit %s: %w", path, err)
	}
	a := &Audit{node: node, epoch: epoch, f: f, w: bufio.NewWriterSize(f, 64<<10),
		stop: make(chan struct{}), done: make(chan struct{})}
	go a.flusher()
	return a, nil
}

func (a *Audit) flusher() {
	defer close(a.done)
	t := time.NewTicker(AuditFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			a.mu.Lock()
			a.flushLocked()
			a.mu.Unlock()
		}
	}
}

func (a *Audit) flushLocked() {
	if a.w.Buffered() == 0 {
		return
	}
	if err := a.w.Flush(); err != nil && a.err == nil {
		a.err = err
	}
}

// Log records one change of path ending now: off and n are the byte range
// written (or the new size of a truncate).
func (a *Audit) Log(op, path string, off, n int64) {
	if a == nil {
		return
	}
	a.log(auditLine{Op: op, Path: path, Off: off, Len: n})
}

// LogRename records a rename of from to path.
func (a *Audit) LogRename(from, path string) {
	if a == nil {
		return
	}
	a.log(auditLine{Op: "rename", Path: path, From: from})
}

func (a *Audit) log(l auditLine) {
	l.BootNs = bootNanos()
	l.UnixNs = time.Now().UnixNano()
	l.Node = a.node
	if a.epoch != nil {
		l.Epoch = a.epoch()
	}
	b, _ := json.Marshal(l)
	b = append(b, '\n')
	a.mu.Lock()
	// Whole lines per write(2): nodes may append to one shared file.
	if a.w.Available() < len(b) {
		a.flushLocked()
	}
	if _, err := a.w.Write(b); err != nil && a.err == nil {
		a.err = err
	}
	a.mu.Unlock()
}

// Close flushes what is buffered, stops the flusher and closes the file.
func (a *Audit) Close() error {
	if a == nil {
		return nil
	}
	close(a.stop)
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	a.flushLocked()
	if err := a.f.Close(); err != nil && a.err == nil {
		a.err = err
	}
	if a.err != nil {
		return fmt.Errorf("write audit: %w", a.err)
	}
	return nil
}
