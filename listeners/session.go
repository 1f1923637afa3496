package listeners

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
)

// session is one client connection (an SSH connection or an FTP control
// connection) with its home jail. It ends when the protocol handler is done,
// its connection is closed and no storage operation or file is in use.
type session struct {
	r      *run
	id     uint64
	proto  string
	remote string
	conn   *trackedConn
	log    *slog.Logger

	fsClosed atomic.Bool // storage access barred (Stop, lease loss, client gone)
	killed   atomic.Bool // closed by Stop or lease loss rather than by the client
	leaseMsg sync.Once

	mu       sync.Mutex
	login    string
	home     *os.Root
	busy     int  // storage operations in progress and open files
	ended    bool // the protocol handler is finished
	connDone bool // the client connection is closed
	finished bool
}

// kill bars storage access and closes the client connection. Safe from any
// goroutine, any number of times.
func (s *session) kill() {
	s.killed.Store(true)
	s.fsClosed.Store(true)
	s.conn.kill()
}

// guard is the check made before every storage access.
func (s *session) guard() error {
	if s.fsClosed.Load() {
		return ErrSessionClosed
	}
	if !s.r.allowed() {
		s.leaseMsg.Do(func() {
			s.log.Warn("lease not held: refusing storage access and closing session", "login", s.loginName())
		})
		s.kill()
		return ErrNotActive
	}
	if s.fsClosed.Load() { // closed while the lease was being checked
		return ErrSessionClosed
	}
	return nil
}

// setHome attaches the home jail after a successful login.
func (s *session) setHome(login string, home *os.Root) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.fsClosed.Load() || s.ended:
		_ = home.Close()
		return ErrSessionClosed
	case s.home != nil && s.login != login:
		_ = home.Close()
		return fmt.Errorf("already logged in as %q", s.login)
	case s.home != nil:
		_ = home.Close()
		return nil
	}
	s.login, s.home = login, home
	return nil
}

func (s *session) loginName() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.login
}

func (s *session) busyCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busy
}

// acquire checks the lease and returns the home jail for one storage
// operation; release must follow.
func (s *session) acquire() (*os.Root, error) {
	if err := s.guard(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fsClosed.Load() || s.ended {
		return nil, ErrSessionClosed
	}
	if s.home == nil {
		return nil, errors.New("not logged in")
	}
	s.busy++
	return s.home, nil
}

// hold keeps the session's home open, whatever the lease, until the
// matching release: for work of an operation that goes on after the
// client heard its answer.
func (s *session) hold() {
	s.mu.Lock()
	s.busy++
	s.mu.Unlock()
}

func (s *session) release() {
	s.mu.Lock()
	s.busy--
	done := s.finishLocked()
	s.mu.Unlock()
	s.afterFinish(done)
}

// endProtocol is called once the protocol handler is finished.
func (s *session) endProtocol() {
	s.fsClosed.Store(true)
	s.mu.Lock()
	s.ended = true
	done := s.finishLocked()
	s.mu.Unlock()
	s.afterFinish(done)
}

func (s *session) connClosed() {
	s.mu.Lock()
	s.connDone = true
	done := s.finishLocked()
	s.mu.Unlock()
	s.afterFinish(done)
}

// finishLocked reports (once) that the session is over, with the home
// jail to close; s.mu is held.
func (s *session) finishLocked() finish {
	if s.finished || !s.ended || !s.connDone || s.busy > 0 {
		return finish{}
	}
	s.finished = true
	f := finish{done: true, home: s.home, login: s.login}
	s.home = nil
	return f
}

type finish struct {
	done  bool
	home  *os.Root
	login string
}

func (s *session) afterFinish(f finish) {
	if !f.done {
		return
	}
	if f.home != nil {
		_ = f.home.Close()
	}
	if f.login != "" {
		s.log.Info("session closed", "login", f.login)
	} else {
		s.log.Debug("connection closed before login")
	}
	s.r.removeSession(s)
}

// openFile opens name (a client path, jailed in the home) for reading and
// keeps the session busy until the file is closed.
func (s *session) openFile(name string, flag int) (*guardedFile, error) {
	if err := clientPath(name); err != nil {
		return nil, err
	}
	root, err := s.acquire()
	if err != nil {
		return nil, err
	}
	f, err := root.OpenFile(relPath(name), flag, filePerm)
	if err != nil {
		s.release()
		return nil, err
	}
	return &guardedFile{f: f, s: s}, nil
}

// openTransfer opens a client's download or upload; with a Recorder the
// file is recorded as a transfer.
func (s *session) openTransfer(name string, flag int, appendOnly, upload bool) (*guardedFile, error) {
	if upload {
		return s.openUpload(name, flag, appendOnly)
	}
	g, err := s.openFile(name, flag)
	if err != nil || s.r.cfg.Recorder == nil {
		return g, err
	}
	rec, err := s.r.cfg.Recorder.Begin(s.fileTransfer(name, false))
	if err != nil {
		g.Close()
		s.log.Warn("transfer not recorded: refusing the file", "path", name, "err", err)
		return nil, fmt.Errorf("record transfer: %w", err)
	}
	g.rec = rec
	return g, nil
}

func (s *session) fileTransfer(name string, upload bool) FileTransfer {
	return FileTransfer{Protocol: s.proto, Login: s.loginName(), Path: "/" + relPathSlash(name), Upload: upload}
}

// localStaging counts the staging files of unrecorded uploads.
var localStaging atomic.Uint64

// openUpload opens a client's upload of name as a staging file in the
// directory of name (see StagingPrefix): empty when the client truncates;
// else holding what the client continues, the committed checkpoint of its
// cut upload of name when there is one and no file name yet, or a copy of
// the file. Close renames it into place once the end is committed. The
// staging file of a resumed upload is a new file (a deposed node's late
// write into the old one cannot reach it), and the old one is removed.
func (s *session) openUpload(name string, flag int, appendOnly bool) (*guardedFile, error) {
	if err := clientPath(name); err != nil {
		return nil, err
	}
	root, err := s.acquire()
	if err != nil {
		return nil, err
	}
	kept := false
	defer func() {
		if !kept {
			s.release()
		}
	}()
	rel := relPath(name)
	if rel == "." {
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
	}
	dir := path.Dir(rel)
	// The upload's directory stays open until the file is in place: its
	// create, rename and fsyncs need no walk from the home each.
	d, err := root.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if !kept {
			_ = d.Close()
		}
	}()
	key, err := keyOf(d, ".")
	if err != nil {
		return nil, err
	}
	fi, err := d.Lstat(path.Base(rel))
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, err
	case exists && fi.IsDir():
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
	case exists && !fi.Mode().IsRegular():
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	case exists && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	}
	ft := s.fileTransfer(name, true)
	var pend Pending
	var pendName string
	if !exists && flag&os.O_TRUNC == 0 {
		pend, pendName = s.pending(root, ft)
	}
	if !exists && pendName == "" && flag&os.O_CREATE == 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}

	var rec Record
	var id, epoch uint64
	if s.r.cfg.Recorder != nil {
		rec, err = s.r.cfg.Recorder.Begin(ft)
		if err != nil {
			s.log.Warn("transfer not recorded: refusing the file", "path", name, "err", err)
			return nil, fmt.Errorf("record transfer: %w", err)
		}
		id, epoch = rec.Staging()
	} else {
		id = uint64(time.Now().UnixNano()) + localStaging.Add(1)
	}
	g := &guardedFile{s: s, root: root, dir: d, dirKey: key,
		rec: rec, upload: true, appendOnly: appendOnly,
		final: rel, staging: path.Join(dir, StagingName(id, epoch)), audit: s.r.cfg.Audit}
	if g.audit != nil {
		g.auditPath = filepath.Join(s.r.cfg.Root, s.loginName(), filepath.FromSlash(g.staging))
	}
	fail := func(err error) (*guardedFile, error) {
		if g.f != nil {
			_ = g.f.Close()
			if s.r.allowed() && d.Remove(path.Base(g.staging)) == nil {
				g.audit.Log("delete", g.auditPath, 0, 0)
			}
		}
		if rec != nil {
			_ = rec.End(-1, err)
		}
		return nil, err
	}
	if err := s.guard(); err != nil {
		return fail(err)
	}
	if g.f, err = d.OpenFile(path.Base(g.staging), os.O_RDWR|os.O_CREATE|os.O_EXCL, filePerm); err != nil {
		return fail(fmt.Errorf("staging file for %s: %w", name, err))
	}
	g.audit.Log("create", g.auditPath, 0, 0)
	if rec != nil {
		// The name's fsync, needed before the end commits (syncStaged),
		// lingers meanwhile for other uploads' fsyncs to ride with it.
		g.named = g.askDirSync(nameLinger)
	}
	var base int64
	switch {
	case pendName != "":
		base, err = g.copyFrom(pendName, pend.Checkpoint)
	case exists && flag&os.O_TRUNC == 0:
		base, err = g.copyFrom(rel, fi.Size())
	}
	if err != nil {
		return fail(err)
	}
	// The cut upload lives on in the new staging file, on disk before
	// its old one goes (a deposed node's late write into it reaches
	// nothing). A fresh staging file needs no directory fsync: what a
	// crash of the host may lose of it is what the client resends (an
	// upload whose staging file is gone, or shorter than its checkpoint,
	// continues from what is there), and the fsync before its end is
	// committed covers its name (syncStaged).
	if pendName != "" {
		if err := s.guard(); err != nil {
			return fail(err)
		}
		if err := SyncDir(d, "."); err != nil {
			return fail(err)
		}
		if err := s.guard(); err != nil {
			return fail(err)
		}
		if root.Remove(pendName) == nil {
			g.audit.Log("delete", filepath.Join(filepath.Dir(g.auditPath), path.Base(pendName)), 0, 0)
		}
	}
	g.appendAt, g.contig, g.pos = base, base, 0
	if flag&os.O_APPEND != 0 {
		g.pos = base
	}
	if _, err := g.f.Seek(g.pos, io.SeekStart); err != nil {
		return fail(err)
	}
	g.wb = &writeBehind{f: g.f}
	if rec != nil && base > 0 {
		rec.Progress(base)
	}
	kept = true
	return g, nil
}

// pending finds the cut upload a client continues: the newest one whose
// staging file is still there.
func (s *session) pending(root *os.Root, ft FileTransfer) (Pending, string) {
	if s.r.cfg.Recorder == nil {
		return Pending{}, ""
	}
	dir := path.Dir(relPath(ft.Path))
	for _, p := range s.r.cfg.Recorder.Pending(ft) {
		names, err := FindStaging(root, dir, p.ID)
		if err == nil && len(names) > 0 {
			return p, path.Join(dir, names[len(names)-1])
		}
	}
	return Pending{}, ""
}

// stat is a client's stat (lstat) of name: the file, or, while there is no
// file, the committed part of the client's cut upload of it (what reput
// and REST continue from).
func (s *session) stat(root *os.Root, name string, lstat bool) (os.FileInfo, error) {
	p := relPath(name)
	var fi os.FileInfo
	var err error
	if lstat {
		fi, err = root.Lstat(p)
	} else {
		fi, err = root.Stat(p)
	}
	if err == nil || !errors.Is(err, fs.ErrNotExist) || p == "." {
		return fi, err
	}
	pend, staged := s.pending(root, s.fileTransfer(name, true))
	if staged == "" {
		return nil, err
	}
	sfi, serr := root.Stat(staged)
	if serr != nil {
		return nil, err
	}
	return namedInfo{FileInfo: sfi, name: path.Base(p), size: min(sfi.Size(), pend.Checkpoint)}, nil
}

func relPathSlash(name string) string {
	if p := relPath(name); p != "." {
		return p
	}
	return ""
}

// do runs one storage operation inside the home jail, on the client
// paths names (a staging file is not there for a client).
func (s *session) do(fn func(root *os.Root) error, names ...string) error {
	for _, n := range names {
		if err := clientPath(n); err != nil {
			return err
		}
	}
	root, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	return fn(root)
}

// logChange records a client's change of name in the write audit.
func (s *session) logChange(op, name string, off, n int64) {
	if a := s.r.cfg.Audit; a != nil {
		a.Log(op, s.auditPath(name), off, n)
	}
}

// logRename records a client's rename of from to to in the write audit.
func (s *session) logRename(from, to string) {
	if a := s.r.cfg.Audit; a != nil {
		a.LogRename(s.auditPath(from), s.auditPath(to))
	}
}

func (s *session) auditPath(name string) string {
	return filepath.Join(s.r.cfg.Root, s.loginName(), filepath.FromSlash(relPath(name)))
}

// openHome creates Root/<login> if needed and returns a jail on it.
func (r *run) openHome(login string) (*os.Root, error) {
	if !validLogin(login) {
		return nil, fmt.Errorf("invalid login %q", login)
	}
	if !r.allowed() {
		return nil, ErrNotActive
	}
	base, err := os.OpenRoot(r.cfg.Root)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(r.cfg.Root, homePerm); err != nil {
			return nil, err
		}
		base, err = os.OpenRoot(r.cfg.Root)
	}
	if err != nil {
		return nil, err
	}
	defer base.Close()
	if err := base.Mkdir(login, homePerm); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create home of %q: %w", login, err)
	}
	home, err := base.OpenRoot(login)
	if err != nil {
		return nil, fmt.Errorf("open home of %q: %w", login, err)
	}
	return home, nil
}

// validLogin accepts logins usable as one directory name.
func validLogin(login string) bool {
	if login == "" || len(login) > 255 || login == "." || login == ".." {
		return false
	}
	for _, c := range login {
		if c == '/' || c == '\\' || c == 0 || unicode.IsControl(c) {
			return false
		}
	}
	return true
}

// relPath maps a client path (absolute or relative to the home, "/" being
// the home) to a path relative to the home for os.Root. Cleaning with a
// leading "/" makes ".." stop at the home; os.Root then refuses symlinks
// leading out of it.
func relPath(name string) string {
	p := path.Clean("/" + strings.ReplaceAll(name, "\\", "/"))
	if p == "/" {
		return "."
	}
	return p[1:]
}

// guardedFile is an *os.File from a home jail whose every read and write is
// preceded by the lease check. It deliberately does not embed *os.File so
// that ReadFrom/WriteTo cannot bypass the check.
type guardedFile struct {
	f          *os.File
	s          *session
	appendOnly bool
	// appendAt is the size at open of an append-mode file; appendShift
	// says, from the first write on, whether the client's offsets count
	// from there (they start below it) or are absolute (OpenSSH reput).
	appendAt     int64
	appendShift  int64
	appendShifts sync.Once
	closeOnce    sync.Once
	closeErr     error

	rec    Record // nil when not recorded
	upload bool
	wb     *writeBehind // an upload's writeback pacing
	// An upload is written to staging and renamed to final (both
	// relative to root, the home) by Close, in dir, final's directory,
	// open until the file is in place (promote) or left staged. named is
	// the fsync of dir that puts a recorded upload's staging name on disk.
	root, dir      *os.Root
	dirKey         dirKey
	named          *syncTicket
	staging, final string
	audit          *Audit // nil: no write audit
	auditPath      string // the staging file's path, for the audit
	xferMu         sync.Mutex
	xferErr        error // set by the protocol library when the transfer failed

	// Progress of a recorded file, under pmu: bytes read; or, for an
	// upload, contig, the end of the gap-free data, pending the ranges
	// written beyond a gap (start → end), and pos the offset of Write.
	pmu     sync.Mutex
	read    int64
	contig  int64
	pending map[int64]int64
	pos     int64
}

// moved reports n bytes read to the record and passes (n, err) through.
func (g *guardedFile) moved(n int, err error) (int, error) {
	if g.rec != nil && n > 0 {
		g.pmu.Lock()
		g.read += int64(n)
		p := g.read
		g.pmu.Unlock()
		g.rec.Progress(p)
	}
	return n, err
}

// wrote reports n bytes written at off (-1: appended) to the record.
func (g *guardedFile) wrote(off int64, n int, err error) (int, error) {
	if n <= 0 {
		return n, err
	}
	g.pmu.Lock()
	if off < 0 {
		off = g.contig
	}
	end := off + int64(n)
	switch {
	case off <= g.contig:
		g.contig = max(g.contig, end)
		for {
			e, ok := g.pending[g.contig]
			if !ok {
				break
			}
			delete(g.pending, g.contig)
			g.contig = max(g.contig, e)
		}
	default:
		if g.pending == nil {
			g.pending = map[int64]int64{}
		}
		g.pending[off] = max(g.pending[off], end)
	}
	p := g.contig
	g.pmu.Unlock()
	if g.rec != nil {
		g.rec.Progress(p)
	}
	if g.wb != nil {
		g.wb.advance(p)
	}
	return n, err
}

// copyFrom fills the fresh staging file with the first n bytes of src (a
// path in the home): what the client continues.
func (g *guardedFile) copyFrom(src string, n int64) (int64, error) {
	if err := g.s.guard(); err != nil {
		return 0, err
	}
	in, err := g.root.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	copied, err := CopyPrefix(g.f, in, n)
	g.audit.Log("write", g.auditPath, 0, copied)
	if err != nil {
		return copied, fmt.Errorf("continue %s: %w", g.final, err)
	}
	return copied, nil
}

func (g *guardedFile) Read(p []byte) (int, error) {
	if err := g.s.guard(); err != nil {
		return 0, err
	}
	return g.moved(g.f.Read(p))
}

func (g *guardedFile) ReadAt(p []byte, off int64) (int, error) {
	if err := g.s.guard(); err != nil {
		return 0, err
	}
	return g.moved(g.f.ReadAt(p, off))
}

func (g *guardedFile) Write(p []byte) (int, error) {
	if err := g.s.guard(); err != nil {
		return 0, err
	}
	g.pmu.Lock()
	off := g.pos
	g.pmu.Unlock()
	n, err := g.f.Write(p)
	g.pmu.Lock()
	g.pos += int64(n)
	g.pmu.Unlock()
	if g.audit != nil && n > 0 {
		g.audit.Log("write", g.auditPath, off, int64(n))
	}
	return g.wrote(off, n, err)
}

// TransferError is how pkg/sftp and ftpserverlib say that the transfer
// of this file failed (connection lost) before they close it.
func (g *guardedFile) TransferError(err error) {
	g.xferMu.Lock()
	if g.xferErr == nil {
		g.xferErr = err
	}
	g.xferMu.Unlock()
}

// WriteAt writes at off. For SFTP append opens, offsets below the size at
// open count from the end of the file (clients that append from 0), and
// offsets at or past it are taken as they are (clients that resume at the
// remote size, like OpenSSH reput); the choice is made at the first write.
func (g *guardedFile) WriteAt(p []byte, off int64) (int, error) {
	if err := g.s.guard(); err != nil {
		return 0, err
	}
	if g.appendOnly {
		g.appendShifts.Do(func() {
			if off < g.appendAt {
				g.appendShift = g.appendAt
			}
		})
		off += g.appendShift
	}
	n, err := g.f.WriteAt(p, off)
	if g.audit != nil && n > 0 {
		g.audit.Log("write", g.auditPath, off, int64(n))
	}
	return g.wrote(off, n, err)
}

func (g *guardedFile) WriteString(str string) (int, error) {
	return g.Write([]byte(str))
}

func (g *guardedFile) Seek(offset int64, whence int) (int64, error) {
	pos, err := g.f.Seek(offset, whence)
	if err == nil {
		g.pmu.Lock()
		g.pos = pos
		g.pmu.Unlock()
	}
	return pos, err
}

func (g *guardedFile) Truncate(size int64) error {
	if err := g.s.guard(); err != nil {
		return err
	}
	err := g.f.Truncate(size)
	if err == nil {
		g.audit.Log("truncate", g.auditPath, size, 0)
	}
	return err
}

func (g *guardedFile) Sync() error {
	if err := g.s.guard(); err != nil {
		return err
	}
	return g.f.Sync()
}

func (g *guardedFile) Stat() (os.FileInfo, error) {
	if err := g.s.guard(); err != nil {
		return nil, err
	}
	fi, err := g.f.Stat()
	if err != nil || g.staging == "" {
		return fi, err
	}
	return namedInfo{FileInfo: fi, name: path.Base(g.final), size: fi.Size()}, nil
}

func (g *guardedFile) Readdir(count int) ([]os.FileInfo, error) {
	if err := g.s.guard(); err != nil {
		return nil, err
	}
	infos, err := g.f.Readdir(count)
	return visible(infos), err
}

func (g *guardedFile) Readdirnames(n int) ([]string, error) {
	if err := g.s.guard(); err != nil {
		return nil, err
	}
	names, err := g.f.Readdirnames(n)
	out := names[:0]
	for _, name := range names {
		if !IsStaging(name) {
			out = append(out, name)
		}
	}
	return out, err
}

// Name is the client's name of the file (an upload's staging name is not
// the client's business).
func (g *guardedFile) Name() string {
	if g.staging != "" {
		return "/" + g.final
	}
	return g.f.Name()
}

// Close closes the file once and releases the session. A complete upload
// is fsynced with its name (syncStaged), its end committed (Record.End),
// then renamed into place under the lease; only then does the client hear
// that it is done. A cut upload stays in its staging file, cut back to its
// gap-free part, for the client to resume.
func (g *guardedFile) Close() error {
	g.closeOnce.Do(func() {
		defer g.s.release()
		if !g.upload {
			var size int64 = -1
			if g.rec != nil {
				if fi, err := g.f.Stat(); err == nil {
					size = fi.Size()
				}
			}
			g.closeErr = g.f.Close()
			if g.rec != nil {
				g.xferMu.Lock()
				cut := g.xferErr
				g.xferMu.Unlock()
				if cut == nil && g.s.killed.Load() {
					cut = ErrSessionClosed
				}
				_ = g.rec.End(size, cut)
			}
			return
		}
		g.xferMu.Lock()
		cut := g.xferErr
		g.xferMu.Unlock()
		if cut == nil && g.s.killed.Load() {
			cut = ErrSessionClosed
		}
		var size int64 = -1
		if fi, err := g.f.Stat(); err == nil {
			size = fi.Size()
		}
		g.pmu.Lock()
		contig := g.contig
		g.pmu.Unlock()
		// A cut upload may end with gaps (pipelined writes): keep what a
		// client can resume from, while this node may write.
		if cut != nil && contig < size && g.s.r.allowed() && g.f.Truncate(contig) == nil {
			g.audit.Log("truncate", g.auditPath, contig, 0)
			size = contig
		}
		// A complete upload is on disk before the client hears that it
		// is: an acknowledged file survives a crash of the host.
		if cut == nil {
			if !g.s.r.allowed() {
				_ = g.s.guard() // closes the session, as any refused operation
				cut = ErrNotActive
			} else if err := g.syncStaged(); err != nil {
				cut = err
			}
			g.closeErr = cut
		}
		if err := g.f.Close(); g.closeErr == nil && err != nil {
			g.closeErr = err
			cut = err
		}
		if g.rec != nil {
			if err := g.rec.End(size, cut); err != nil && cut == nil {
				g.closeErr = fmt.Errorf("upload not recorded: %w", err)
				cut = g.closeErr
			}
		}
		if cut != nil {
			_ = g.dir.Close()
			return
		}
		if err := g.promote(); err != nil {
			g.closeErr = err
		}
	})
	return g.closeErr
}

// syncStaged puts a complete upload's staging file on disk, its data and
// its name, before its end is committed: the two fsyncs run at once. The
// name needs its own: the staging file is fresh (see openUpload), and once
// its end is committed, a DONE transfer whose staging file is there is all
// the next ACTIVE node needs to put the file in place (finishStaging), so
// the rename after it need not be on disk before the client hears.
func (g *guardedFile) syncStaged() error {
	if g.named != nil {
		g.named.hurry()
	}
	err := g.f.Sync()
	if err != nil {
		err = fmt.Errorf("sync %s: %w", g.final, err)
	}
	if g.named != nil {
		err = errors.Join(err, g.named.wait())
	}
	return err
}

// askDirSync asks for an fsync of the upload's directory, to start within
// linger (see groupSync); it needs dir open.
func (g *guardedFile) askDirSync(linger time.Duration) *syncTicket {
	return dirSyncs.ask(g.dirKey, openDir(g.dir, "."), linger)
}

// promote renames a complete upload into place, under the lease. When it
// fails after the end was committed, the next ACTIVE node renames the
// staging file of the DONE transfer. A recorded upload's directory is
// fsynced after the client heard (see syncStaged), in a round that other
// uploads into it need sooner or, at the latest, after renameLinger; the
// record hears (Placer) once it has ended, on a goroutine of the run that
// holds the session: until then, only its DONE transfer in the state
// (which the engine keeps there) can put it back in place after a crash of
// the host.
// An unrecorded upload's directory is fsynced before the client hears, as
// nothing would redo its rename. It closes dir.
func (g *guardedFile) promote() error {
	placed := func(err error) {
		if p, ok := g.rec.(Placer); ok {
			p.Placed(err)
		}
	}
	if !g.s.r.allowed() {
		_ = g.dir.Close()
		_ = g.s.guard() // closes the session, as any refused operation
		err := fmt.Errorf("upload %s not put in place: %w", g.final, ErrNotActive)
		placed(err)
		return err
	}
	if err := g.dir.Rename(path.Base(g.staging), path.Base(g.final)); err != nil {
		_ = g.dir.Close()
		err = fmt.Errorf("upload %s not put in place: %w", g.final, err)
		placed(err)
		return err
	}
	if g.audit != nil {
		g.audit.LogRename(g.auditPath, filepath.Join(filepath.Dir(g.auditPath), path.Base(g.final)))
	}
	if g.rec == nil {
		defer g.dir.Close()
		return g.askDirSync(0).wait()
	}
	renamed := g.askDirSync(renameLinger)
	_ = g.dir.Close()
	g.s.hold()
	g.s.r.spawn(func() {
		defer g.s.release()
		if err := renamed.wait(); err != nil {
			g.s.log.Warn("upload put in place, directory not synced", "path", g.final, "err", err)
		}
		placed(nil)
	})
	return nil
}
