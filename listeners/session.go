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
	return &guardedFile{f: f, s: s, appendOnly: appendOnly}, nil
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
	amu        sync.Mutex
	closeOnce  sync.Once
	closeErr   error
}

func (g *guardedFile) Read(p []byte) (int, error) {
	if err := g.s.guard(); err != nil {
		return 0, err
	}
	return g.f.Read(p)
}

func (g *guardedFile) ReadAt(p []byte, off int64) (int, error) {
	if err := g.s.guard(); err != nil {
		return 0, err
	}
	return g.f.ReadAt(p, off)
}

func (g *guardedFile) Write(p []byte) (int, error) {
	if err := g.s.guard(); err != nil {
		return 0, err
	}
	return g.f.Write(p)
}

// WriteAt writes at off, or at the end of the file for SFTP append opens
// (like OpenSSH's sftp-server, which opens with O_APPEND).
func (g *guardedFile) WriteAt(p []byte, off int64) (int, error) {
	if err := g.s.guard(); err != nil {
		return 0, err
	}
	if g.appendOnly {
		g.amu.Lock()
		defer g.amu.Unlock()
		return g.f.Write(p)
	}
	return g.f.WriteAt(p, off)
}

func (g *guardedFile) WriteString(str string) (int, error) {
	return g.Write([]byte(str))
}

func (g *guardedFile) Seek(offset int64, whence int) (int64, error) {
	return g.f.Seek(offset, whence)
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
		g.closeErr = g.f.Close()
		g.s.release()
	})
	return g.closeErr
}
