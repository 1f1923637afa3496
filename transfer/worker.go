package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/listeners"
)

// ErrNotActive stops a worker whose node no longer holds the lease.
var ErrNotActive = errors.New("lease not held: transfer stopped")

// partnerSession is an open connection to a partner, for one transfer.
type partnerSession interface {
	// size is the remote file's size; fs.ErrNotExist when it has none.
	size(remote string) (int64, error)
	// push writes src (the local file from off on) to remote from off on,
	// calling cp after each segment whose bytes the partner acknowledged.
	push(remote string, src io.ReaderAt, off, size int64, cp *checkpointer) (int64, error)
	// pull reads remote from off on into dst.
	pull(remote string, dst io.Writer, off int64, cp *checkpointer) (int64, error)
	close() error
}

// runTransfer moves one file, resuming from its last checkpoint.
func (e *Engine) runTransfer(ctx context.Context, t fsm.Transfer) result {
	r := result{progress: t.Progress, size: t.Filesize, local: t.LocalPath, receive: !t.IsSend}
	// A local path that reaches DataDir or a key file is refused before
	// any partner is dialled: nothing is sent, nothing is overwritten.
	if err := e.cfg.Protected.File(filepath.Join(e.cfg.GatewayHome, t.LocalPath)); err != nil {
		r.err = fmt.Errorf("transfer %d of rule %s: local path %s: %w", t.ID, t.Rule, t.LocalPath, err)
		return r
	}
	var p fsm.Partner
	var acc fsm.RemoteAccount
	var found, hasAccount bool
	e.cfg.Node.Read(func(s *fsm.State) {
		p, found = s.Partners[t.Agent]
		acc, hasAccount = s.RemoteAccounts[fsm.AccountKey(t.Agent, t.Account)]
	})
	if !found {
		r.err = fmt.Errorf("partner %q: %w", t.Agent, fsm.ErrUnknownObject)
		return r
	}
	if !hasAccount {
		r.err = fmt.Errorf("remote account %q of partner %q: %w", t.Account, t.Agent, fsm.ErrUnknownObject)
		return r
	}
	sess, release, err := e.session(ctx, p, acc)
	if err != nil {
		r.err = err
		return r
	}
	defer func() { release(r.err == nil) }()

	root, err := os.OpenRoot(e.cfg.GatewayHome)
	if err != nil {
		// The gateway's own storage (an unmounted share?), not the file.
		r.err = transient(fsm.TeInternal, fmt.Errorf("open GatewayHome: %w", err))
		return r
	}
	defer root.Close()
	cp := &checkpointer{e: e, id: t.ID, committed: t.Progress, last: time.Now()}
	if t.IsSend {
		r.progress, r.size, r.err = e.push(ctx, root, sess, t, cp)
	} else {
		r.progress, r.size, r.err = e.pull(ctx, root, sess, t, cp)
	}
	if r.err != nil {
		r.progress = cp.committed
		if ctx.Err() != nil {
			r.err = fmt.Errorf("%w (%v)", context.Cause(ctx), r.err)
		}
	}
	return r
}

func (e *Engine) push(ctx context.Context, root *os.Root, sess partnerSession, t fsm.Transfer, cp *checkpointer) (int64, int64, error) {
	local, err := root.Open(t.LocalPath)
	if err != nil {
		return 0, 0, fmt.Errorf("local file %s: %w", t.LocalPath, err)
	}
	defer local.Close()
	fi, err := local.Stat()
	if err != nil {
		return 0, 0, err
	}
	if err := e.cfg.Protected.Opened(t.LocalPath, fi); err != nil {
		return 0, 0, fmt.Errorf("transfer %d of rule %s: local file: %w", t.ID, t.Rule, err)
	}
	size := fi.Size()
	if err := e.setSize(t, size); err != nil {
		return 0, size, err
	}
	// Resume from the checkpoint, but never past what the partner has.
	off := min(t.Progress, size)
	if off > 0 {
		have, err := sess.size(t.RemotePath)
		if err != nil {
			have = 0
		}
		off = min(off, have)
	}
	cp.committed = off
	src := &leaseReaderAt{r: local, valid: e.cfg.Node.LeaseValid, meter: e.cfg.Meter}
	n, err := sess.push(t.RemotePath, src, off, size, cp)
	if err != nil {
		return n, size, err
	}
	if ctx.Err() != nil {
		return n, size, context.Cause(ctx)
	}
	if have, err := sess.size(t.RemotePath); err != nil || have != size {
		return n, size, fmt.Errorf("%w: partner has %d bytes of %d (%v)", errBadSize, have, size, err)
	}
	return size, size, nil
}

func (e *Engine) pull(ctx context.Context, root *os.Root, sess partnerSession, t fsm.Transfer, cp *checkpointer) (int64, int64, error) {
	size, err := sess.size(t.RemotePath)
	if err != nil {
		return 0, -1, fmt.Errorf("remote file %s: %w", t.RemotePath, err)
	}
	if err := e.setSize(t, size); err != nil {
		return 0, size, err
	}
	local, off, err := e.openStaging(root, t, size)
	if err != nil {
		return 0, size, err
	}
	defer local.Close()
	cp.committed = off
	cp.sync = func() error {
		if err := e.fence("sync", t.LocalPath); err != nil {
			return err
		}
		return local.Sync()
	}
	dst := &leaseWriter{w: local, valid: e.cfg.Node.LeaseValid, meter: e.cfg.Meter,
		audit: e.cfg.Audit, path: filepath.Join(e.cfg.GatewayHome, filepath.Dir(t.LocalPath), listeners.StagingName(t.ID, e.epoch)), off: off}
	n, err := sess.pull(t.RemotePath, dst, off, cp)
	if err != nil {
		return n, size, err
	}
	if ctx.Err() != nil {
		return n, size, context.Cause(ctx)
	}
	if err := cp.sync(); err != nil {
		return n, size, err
	}
	if n != size {
		return n, size, fmt.Errorf("%w: received %d bytes of %d", errBadSize, n, size)
	}
	// Renamed into place by finish, once DONE is committed.
	return size, size, nil
}

// fence is the lease check before every change the engine makes to
// storage (create, truncate, sync, rename, delete, mkdir): a deposed node
// changes nothing, even after a partner dial of several seconds.
func (e *Engine) fence(op, name string) error {
	if !e.cfg.Node.LeaseValid() {
		return fmt.Errorf("%s %s: %w", op, name, ErrNotActive)
	}
	return nil
}

// openStaging opens the staging file of a pull under this epoch
// (listeners.StagingName, next to t.LocalPath), holding the transfer's
// committed checkpoint: a staging file of an older epoch is continued by
// copying its checkpoint into a new file (a deposed node's late write into
// the old one cannot reach it), then removed. It returns the file,
// positioned at the offset to continue from.
func (e *Engine) openStaging(root *os.Root, t fsm.Transfer, size int64) (*os.File, int64, error) {
	dir := filepath.Dir(t.LocalPath)
	if dir != "." {
		if err := e.fence("mkdir", dir); err != nil {
			return nil, 0, err
		}
		if err := root.MkdirAll(dir, 0o750); err != nil {
			return nil, 0, fmt.Errorf("local directory %s: %w", dir, err)
		}
	}
	name := filepath.Join(dir, listeners.StagingName(t.ID, e.epoch))
	staged, err := listeners.FindStaging(root, dir, t.ID)
	if err != nil {
		return nil, 0, fmt.Errorf("local file %s: %w", t.LocalPath, err)
	}
	if err := e.fence("create", name); err != nil {
		return nil, 0, err
	}
	local, err := root.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, fmt.Errorf("local file %s: %w", t.LocalPath, err)
	}
	abs := filepath.Join(e.cfg.GatewayHome, name)
	e.cfg.Audit.Log("create", abs, 0, 0)
	fail := func(err error) (*os.File, int64, error) {
		local.Close()
		return nil, 0, err
	}
	fi, err := local.Stat()
	if err != nil {
		return fail(err)
	}
	have := fi.Size()
	for i := len(staged) - 1; i >= 0; i-- {
		old := filepath.Join(dir, staged[i])
		if old == name {
			continue
		}
		if have == 0 && t.Progress > 0 {
			if err := e.fence("write", name); err != nil {
				return fail(err)
			}
			src, err := root.Open(old)
			if err != nil {
				return fail(fmt.Errorf("continue %s: %w", old, err))
			}
			have, err = listeners.CopyPrefix(local, src, min(t.Progress, size))
			src.Close()
			e.cfg.Audit.Log("write", abs, 0, have)
			if err != nil {
				return fail(fmt.Errorf("continue %s: %w", old, err))
			}
		}
		if err := e.fence("delete", old); err != nil {
			return fail(err)
		}
		if err := root.Remove(old); err == nil {
			e.cfg.Audit.Log("delete", filepath.Join(e.cfg.GatewayHome, old), 0, 0)
		}
	}
	off := min(t.Progress, have, size)
	// Bytes past the checkpoint may be partial; drop them.
	if err := e.fence("truncate", name); err != nil {
		return fail(err)
	}
	if err := local.Truncate(off); err != nil {
		return fail(err)
	}
	e.cfg.Audit.Log("truncate", abs, off, 0)
	if err := listeners.SyncDir(root, dir); err != nil {
		return fail(err)
	}
	if _, err := local.Seek(off, io.SeekStart); err != nil {
		return fail(err)
	}
	return local, off, nil
}

// promote renames the staging file of a DONE pull into place, under the
// lease, and fsyncs its directory. When it cannot, the next ACTIVE node's
// takeover does it.
func (e *Engine) promote(root *os.Root, id uint64, final string, epoch uint64) error {
	dir := filepath.Dir(final)
	name := filepath.Join(dir, listeners.StagingName(id, epoch))
	if err := e.fence("rename", name); err != nil {
		return err
	}
	if err := root.Rename(name, final); err != nil {
		return fmt.Errorf("put %s in place: %w", final, err)
	}
	e.cfg.Audit.LogRename(filepath.Join(e.cfg.GatewayHome, name), filepath.Join(e.cfg.GatewayHome, final))
	return listeners.SyncDir(root, dir)
}

func (e *Engine) setSize(t fsm.Transfer, size int64) error {
	if t.Filesize == size {
		return nil
	}
	return e.update(fsm.TransferChange{ID: t.ID, Filesize: &size, Step: fsm.StepData})
}

var errBadSize = errors.New("size mismatch")

// checkpointer commits progress every CheckpointBytes or CheckpointInterval.
type checkpointer struct {
	e         *Engine
	id        uint64
	committed int64
	last      time.Time
	sync      func() error // makes the bytes durable before they are committed (pulls)
}

// reached is told that every byte before off is at the destination.
func (c *checkpointer) reached(off int64) error {
	every := c.e.cfg.CheckpointBytes
	if every < 0 || off-c.committed < every && time.Since(c.last) < c.e.cfg.CheckpointInterval {
		return nil
	}
	if c.sync != nil {
		if err := c.sync(); err != nil {
			return err
		}
	}
	if err := c.e.update(fsm.TransferChange{ID: c.id, Progress: &off}); err != nil {
		return fmt.Errorf("checkpoint at %d: %w", off, err)
	}
	c.committed, c.last = off, time.Now()
	return nil
}

// segment is how much a push sends between two looks at the checkpoint.
func (c *checkpointer) segment() int64 {
	if c.e.cfg.CheckpointBytes > 0 {
		return min(c.e.cfg.CheckpointBytes, 8<<20)
	}
	return 8 << 20
}

// leaseReaderAt refuses reads once the lease is gone: a deposed node must
// not keep feeding a partner.
type leaseReaderAt struct {
	r     io.ReaderAt
	valid func() bool
	meter *Meter
}

func (l *leaseReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if !l.valid() {
		return 0, ErrNotActive
	}
	n, err := l.r.ReadAt(p, off)
	l.meter.add(true, n)
	return n, err
}

// leaseWriter refuses writes to storage once the lease is gone.
type leaseWriter struct {
	w     io.Writer
	valid func() bool
	meter *Meter
	audit *listeners.Audit // nil: no write audit
	path  string           // for the audit
	off   int64            // offset of the next write, for the audit
}

func (l *leaseWriter) Write(p []byte) (int, error) {
	if !l.valid() {
		return 0, ErrNotActive
	}
	n, err := l.w.Write(p)
	l.meter.add(false, n)
	if l.audit != nil && n > 0 {
		l.audit.Log("write", l.path, l.off, int64(n))
		l.off += int64(n)
	}
	return n, err
}

// dial connects to the partner with the remote account's credentials.
func (e *Engine) dial(ctx context.Context, p fsm.Partner, acc fsm.RemoteAccount) (partnerSession, error) {
	if e.cfg.Secrets == nil {
		return nil, permanent(fsm.TeInternal, errors.New("no AES passphrase to open the remote account's credentials"))
	}
	password, err := e.cfg.Secrets.Open(acc.Password)
	if err != nil {
		return nil, permanent(fsm.TeInternal, fmt.Errorf("remote account %s password: %w", acc.Login, err))
	}
	key, err := e.cfg.Secrets.Open(acc.PrivateKey)
	if err != nil {
		return nil, permanent(fsm.TeInternal, fmt.Errorf("remote account %s private key: %w", acc.Login, err))
	}
	switch p.Protocol {
	case fsm.ProtoSFTP:
		return dialSFTP(ctx, e.localAddr(), p, acc.Login, string(password), key)
	case fsm.ProtoFTP:
		return dialFTP(ctx, e.localAddr(), p, acc.Login, string(password))
	}
	return nil, fmt.Errorf("partner %s: unknown protocol %q", p.Name, p.Protocol)
}

// conns closes every connection of a session at once, from any goroutine.
type conns struct {
	local  net.Addr // where connections leave from; nil: the kernel chooses
	mu     sync.Mutex
	list   []net.Conn
	closed bool
}

func (c *conns) add(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		conn.Close()
		return false
	}
	c.list = append(c.list, conn)
	return true
}

func (c *conns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, conn := range c.list {
		conn.Close()
	}
	c.list = nil
}

func (c *conns) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second, LocalAddr: c.local}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if !c.add(conn) {
		return nil, net.ErrClosed
	}
	return conn, nil
}

// remoteDir is the directory of a remote path, for creating it.
func remoteDir(p string) string { return path.Dir(p) }
