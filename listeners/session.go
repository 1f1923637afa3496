package listeners

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
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

// openFile opens name (a client path, jailed in the home) and keeps the
// session busy until the file is closed.
func (s *session) openFile(name string, flag int, appendOnly bool) (*guardedFile, error) {
	root, err := s.acquire()
	if err != nil {
		return nil, err
	}
	f, err := root.OpenFile(relPath(name), flag, filePerm)
	if err != nil {
		s.release()
		return nil, err
	}
	g := &guardedFile{f: f, s: s, appendOnly: appendOnly}
	if appendOnly {
		if fi, err := f.Stat(); err == nil {
			g.appendAt = fi.Size()
		}
	}
	return g, nil
}

// openTransfer is openFile for a client's download or upload: the file is
// recorded as a transfer when the service has a Recorder.
func (s *session) openTransfer(name string, flag int, appendOnly, upload bool) (*guardedFile, error) {
	g, err := s.openFile(name, flag, appendOnly)
	if err != nil || s.r.cfg.Recorder == nil {
		return g, err
	}
	rec, err := s.r.cfg.Recorder.Begin(FileTransfer{Protocol: s.proto, Login: s.loginName(), Path: "/" + relPathSlash(name), Upload: upload})
	if err != nil {
		g.Close()
		s.log.Warn("transfer not recorded: refusing the file", "path", name, "err", err)
		return nil, fmt.Errorf("record transfer: %w", err)
	}
	g.rec, g.upload = rec, upload
	if upload {
		g.wb = &writeBehind{f: g.f}
		if flag&os.O_TRUNC == 0 {
			if fi, err := g.f.Stat(); err == nil {
				g.contig = fi.Size()
			}
		}
	}
	return g, nil
}

func relPathSlash(name string) string {
	if p := relPath(name); p != "." {
		return p
	}
	return ""
}

// do runs one storage operation inside the home jail.
func (s *session) do(fn func(root *os.Root) error) error {
	root, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	return fn(root)
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

	rec     Record // nil when not recorded
	upload  bool
	wb      *writeBehind // an upload's writeback pacing
	xferMu  sync.Mutex
	xferErr error // set by the protocol library when the transfer failed

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
	if g.rec == nil || n <= 0 {
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
	g.rec.Progress(p)
	if g.wb != nil {
		g.wb.advance(p)
	}
	return n, err
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
	return g.f.Truncate(size)
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
	return g.f.Stat()
}

func (g *guardedFile) Readdir(count int) ([]os.FileInfo, error) {
	if err := g.s.guard(); err != nil {
		return nil, err
	}
	return g.f.Readdir(count)
}

func (g *guardedFile) Readdirnames(n int) ([]string, error) {
	if err := g.s.guard(); err != nil {
		return nil, err
	}
	return g.f.Readdirnames(n)
}

func (g *guardedFile) Name() string { return g.f.Name() }

// Close closes the file once and releases the session.
func (g *guardedFile) Close() error {
	g.closeOnce.Do(func() {
		var size int64 = -1
		var cut error
		if g.rec != nil {
			g.xferMu.Lock()
			cut = g.xferErr
			g.xferMu.Unlock()
			if cut == nil && g.s.killed.Load() {
				cut = ErrSessionClosed
			}
			if fi, err := g.f.Stat(); err == nil {
				size = fi.Size()
			}
			g.pmu.Lock()
			contig := g.contig
			g.pmu.Unlock()
			// A cut upload may end with gaps (pipelined writes): keep
			// what a client can resume from, while this node may write.
			if cut != nil && g.upload && contig < size && g.s.r.allowed() && g.f.Truncate(contig) == nil {
				size = contig
			}
			// A complete upload is on disk before the client hears
			// that it is: an acknowledged file survives a crash of
			// the host, not only of this process.
			if cut == nil && g.upload {
				if err := g.f.Sync(); err != nil {
					cut = fmt.Errorf("sync %s: %w", g.f.Name(), err)
					g.closeErr = cut
				}
			}
		}
		if err := g.f.Close(); g.closeErr == nil {
			g.closeErr = err
		}
		if g.rec != nil {
			if cut == nil && g.closeErr != nil {
				cut = g.closeErr
			}
			if err := g.rec.End(size, cut); err != nil && cut == nil && g.upload {
				g.closeErr = fmt.Errorf("upload not recorded: %w", err)
			}
		}
		g.s.release()
	})
	return g.closeErr
}
