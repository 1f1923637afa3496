// Package listeners runs the MFT listeners (SFTP and FTP) of the ACTIVE node.
//
// The cluster package calls Start when the node becomes ACTIVE and Stop when
// it loses the lease. Stop closes the listening sockets and every accepted
// connection (SSH connections, FTP control connections, FTP passive listeners
// and data connections) and returns only when every session is gone, so that
// two nodes never serve at once.
//
// Every account is confined to Root/<login> with an os.Root, and every access
// to storage is preceded by a lease check (Config.Allowed): when the check
// fails the operation fails and the session is closed.
package listeners

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/authguard"
)

// DefaultStopTimeout bounds Stop when Config.StopTimeout is zero.
const DefaultStopTimeout = 5 * time.Second

const (
	homePerm = 0o750
	filePerm = 0o640
)

var (
	// ErrNotActive is returned by storage operations attempted while
	// Config.Allowed reports false; the session is closed as well.
	ErrNotActive = errors.New("node is not active: lease not held")
	// ErrSessionClosed is returned by storage operations of a session that
	// is being closed (Stop, lease loss, client gone).
	ErrSessionClosed = errors.New("session closed")
)

// Config is what the node hands the MFT services.
type Config struct {
	Host                   string // interface, e.g. "0.0.0.0" or "127.0.0.2"
	SFTPPort               int    // 2222; 0 disables SFTP
	FTPPort                int    // 2121; 0 disables FTP
	PassiveMin, PassiveMax int    // FTP passive port range, e.g. 30000-30009 (0 = any free port)
	// PublicHost is the address put in FTP PASV replies ("" = the address
	// of the control connection's local side). An IPv4 address or a host
	// name resolving to one.
	PublicHost string
	// Root is GatewayHome: each account's home is Root/<login>, created on
	// first login (0o750).
	Root string
	// HostKey is the SSH host key (replicated by the cluster so clients see
	// the same key after failover). Required when SFTPPort != 0.
	HostKey ssh.Signer
	// PasswordHash gives the bcrypt hash a login's password is checked
	// against (authguard.Guard.Verify), nil when the login is unknown or
	// may not log in. nil refuses every password.
	PasswordHash func(login string) []byte
	// Allowed is the lease check: false = this node must not serve. It is
	// checked before handling each accepted connection (control and data)
	// and before every read or write to storage; a refused operation fails
	// and closes its session. nil means always allowed.
	Allowed func() bool
	Logger  *slog.Logger

	// AuthenticateKey, when set, enables SSH public-key login for SFTP.
	AuthenticateKey func(login string, key ssh.PublicKey) bool
	// FTPTLS, when set, enables explicit FTPS (AUTH TLS) on the FTP port;
	// FTPTLSRequired then refuses logins and transfers in clear.
	FTPTLS         *tls.Config
	FTPTLSRequired bool
	// StopTimeout bounds Stop (0 = DefaultStopTimeout).
	StopTimeout time.Duration
	// Recorder, when set, records every file a client downloads or
	// uploads as a server-mode transfer.
	Recorder Recorder
	// Audit, when set, records every change this service makes to
	// storage ([listeners] WriteAudit).
	Audit *Audit
	// Guard slows password guessing (per address and per login) and
	// bounds the bcrypt comparisons; every server of a node shares the
	// node's Guard with the admin API (nil: one of this service's own).
	Guard *authguard.Guard
	// Limits are the unauthenticated-connection and per-account session
	// limits, shared by every server of a node (nil: NewLimits defaults).
	Limits *Limits
	// LoginGrace bounds the time from accept to a successful login
	// (0 = DefaultLoginGrace).
	LoginGrace time.Duration
	// PassiveIdle is how long an FTP passive listener may wait for its
	// data connection before it is closed and its port freed
	// (0 = DefaultPassiveIdle).
	PassiveIdle time.Duration
}

// Recorder records the files clients move. Begin runs before the file is
// used (an error refuses the open); the Record hears of every byte and of
// the close.
type Recorder interface {
	Begin(f FileTransfer) (Record, error)
	// Pending lists the cut uploads of f.Path by f.Login that the client
	// may continue (reput, REST+STOR), newest first: their staging files
	// hold at least Checkpoint committed bytes.
	Pending(f FileTransfer) []Pending
}

// Pending is a cut upload a client may continue.
type Pending struct {
	ID         uint64 // the transfer, as in its StagingName
	Checkpoint int64  // bytes committed
}

// FileTransfer is one file opened by a client.
type FileTransfer struct {
	Protocol string // sftp or ftp
	Login    string
	Path     string // in the home, "/"-rooted and cleaned
	Upload   bool
}

// Record is one recorded file. Progress is called on the hot path and must
// not block: for a download the bytes read, for an upload the end of the
// data written without a gap from the start of the file (what a client can
// resume from). End is called once, at close, with the file's size and,
// when the transfer was cut (client gone, lease lost, session closed), why;
// a cut upload has been truncated to its gap-free part. An error from End
// for a complete upload fails the client's close: an upload is
// acknowledged only once the cluster has recorded it done, so that the
// next ACTIVE node never takes an acknowledged file for a cut one.
type Record interface {
	Progress(p int64)
	End(size int64, cut error) error
	// Staging names an upload's staging file: StagingName(id, epoch).
	Staging() (id, epoch uint64)
}

// Placer is a Record that hears when a complete upload was renamed into
// place and its directory fsynced (err: the rename failed, after its end
// was committed), so that the rule's post-tasks start on the file at its
// final name, and its DONE transfer stays in the state until then.
type Placer interface {
	Placed(err error)
}

// Service owns the MFT listeners of one node.
type Service struct {
	cfg Config
	log *slog.Logger

	lifecycle sync.Mutex // serialises Start and Stop

	mu    sync.Mutex
	cur   *run   // the running generation, nil when stopped
	stale []*run // generations whose Stop timed out, until they drain
}

// New returns a stopped Service.
func New(cfg Config) *Service {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Guard == nil {
		cfg.Guard = authguard.New(authguard.Options{})
	}
	if cfg.Limits == nil {
		cfg.Limits = NewLimits(MaxStartups{}, 0)
	}
	if cfg.LoginGrace <= 0 {
		cfg.LoginGrace = DefaultLoginGrace
	}
	if cfg.PassiveIdle <= 0 {
		cfg.PassiveIdle = DefaultPassiveIdle
	}
	return &Service{cfg: cfg, log: log.With("component", "listeners")}
}

// Start binds the enabled listeners and starts serving. If any bind fails it
// closes what it opened and returns an error naming the address
// ("listen sftp 0.0.0.0:2222: address already in use"). Start on a running
// service is a no-op.
func (s *Service) Start() error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()

	s.mu.Lock()
	running := s.cur != nil
	s.mu.Unlock()
	if running {
		return nil
	}
	if s.cfg.SFTPPort == 0 && s.cfg.FTPPort == 0 {
		s.log.Warn("no MFT listener enabled")
	}
	if (s.cfg.SFTPPort != 0 || s.cfg.FTPPort != 0) && s.cfg.Root == "" {
		return errors.New("listeners: Root (GatewayHome) is not set")
	}
	if s.cfg.SFTPPort != 0 && s.cfg.HostKey == nil {
		return errors.New("listeners: SFTP enabled without a host key")
	}

	r := newRun(&s.cfg, s.log)
	var sshLn, ftpLn net.Listener
	if s.cfg.SFTPPort != 0 {
		ln, err := listen("sftp", s.cfg.Host, s.cfg.SFTPPort)
		if err != nil {
			return err
		}
		sshLn = ln
	}
	if s.cfg.FTPPort != 0 {
		ln, err := listen("ftp", s.cfg.Host, s.cfg.FTPPort)
		if err != nil {
			if sshLn != nil {
				_ = sshLn.Close()
			}
			return err
		}
		ftpLn = ln
	}

	var ftpSrv ftpServer
	if ftpLn != nil {
		srv, err := r.newFTPServer(ftpLn)
		if err != nil {
			_ = ftpLn.Close()
			if sshLn != nil {
				_ = sshLn.Close()
			}
			return fmt.Errorf("listeners: ftp: %w", err)
		}
		ftpSrv = srv
		r.listeners = append(r.listeners, ftpLn)
		r.ftpAddr = ftpLn.Addr()
	}
	if sshLn != nil {
		r.listeners = append(r.listeners, sshLn)
		r.sftpAddr = sshLn.Addr()
		cfg := r.sshConfig()
		r.spawn(func() { r.serveSSH(sshLn, cfg) })
		s.log.Info("SFTP listener open", "addr", sshLn.Addr().String())
	}
	if ftpSrv != nil {
		r.spawn(func() {
			if err := ftpSrv.Serve(); err != nil && !r.isClosed() {
				r.log.Error("FTP server stopped", "err", err)
			}
		})
		s.log.Info("FTP listener open", "addr", ftpLn.Addr().String())
	}

	s.mu.Lock()
	s.cur = r
	s.mu.Unlock()
	return nil
}

// Stop closes the listeners and every session (SSH connections, FTP control
// connections, passive listeners, data connections), and waits for all the
// goroutines and storage handles of the sessions. It returns an error if
// they did not all end within the stop timeout (5s by default). Stop on a
// stopped service is a no-op.
func (s *Service) Stop() error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()

	s.mu.Lock()
	r := s.cur
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	begin := time.Now()
	r.shutdown()
	timeout := s.cfg.StopTimeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	err := r.wait(timeout)

	s.mu.Lock()
	s.cur = nil
	if err != nil {
		s.stale = append(s.stale, r)
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Error("MFT listeners did not stop cleanly", "err", err, "elapsed", time.Since(begin))
		return err
	}
	s.log.Info("MFT listeners stopped", "elapsed", time.Since(begin))
	return nil
}

// Sessions reports how many client sessions are open now (SFTP + FTP): SSH
// connections and FTP control connections accepted and not yet fully closed.
func (s *Service) Sessions() int {
	s.mu.Lock()
	runs := make([]*run, 0, 1+len(s.stale))
	if s.cur != nil {
		runs = append(runs, s.cur)
	}
	kept := s.stale[:0]
	for _, r := range s.stale {
		if !r.idle() {
			kept = append(kept, r)
			runs = append(runs, r)
		}
	}
	clear(s.stale[len(kept):])
	s.stale = kept
	s.mu.Unlock()

	n := 0
	for _, r := range runs {
		n += r.sessionCount()
	}
	return n
}

// Running reports whether the listeners are open.
func (s *Service) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil
}

// SFTPAddr is the bound SFTP address while running, else nil.
func (s *Service) SFTPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil
	}
	return s.cur.sftpAddr
}

// FTPAddr is the bound FTP control address while running, else nil.
func (s *Service) FTPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil
	}
	return s.cur.ftpAddr
}

func listen(proto, host string, port int) (net.Listener, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", proto, addr, rootCause(err))
	}
	return ln, nil
}

// rootCause strips net.OpError and os.SyscallError so messages read
// "address already in use" rather than "listen tcp ...: bind: ...".
func rootCause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	var sc *os.SyscallError
	if errors.As(err, &sc) && sc.Err != nil {
		err = sc.Err
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// run is one Start..Stop generation: its listeners, sessions, goroutines
// and the extra sockets (FTP passive listeners and data connections).
type run struct {
	cfg *Config
	log *slog.Logger

	done   chan struct{} // closed when Stop begins
	wake   chan struct{} // signalled whenever something ends
	ctx    context.Context
	cancel context.CancelFunc // with done: ends logins waiting in the Guard

	listeners []net.Listener
	sftpAddr  net.Addr
	ftpAddr   net.Addr

	mu           sync.Mutex
	closed       bool
	goroutines   int
	nextID       uint64
	sessions     map[*session]struct{}
	ftpByAddr    map[string]*session         // accepted FTP control connections not yet seen by the driver
	reservations map[*session]*sessionLimits // MaxStartups and account reservations (limits.go)
	extra        map[io.Closer]struct{}      // FTP passive listeners and data connections
}

func newRun(cfg *Config, log *slog.Logger) *run {
	ctx, cancel := context.WithCancel(context.Background())
	return &run{
		ctx:          ctx,
		cancel:       cancel,
		cfg:          cfg,
		log:          log,
		done:         make(chan struct{}),
		wake:         make(chan struct{}, 1),
		sessions:     make(map[*session]struct{}),
		ftpByAddr:    make(map[string]*session),
		reservations: make(map[*session]*sessionLimits),
		extra:        make(map[io.Closer]struct{}),
	}
}

func (r *run) allowed() bool {
	return r.cfg.Allowed == nil || r.cfg.Allowed()
}

func (r *run) isClosed() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *run) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// spawn runs f on a goroutine counted by the run; Stop waits for it.
func (r *run) spawn(f func()) {
	r.mu.Lock()
	r.goroutines++
	r.mu.Unlock()
	go func() {
		defer func() {
			r.mu.Lock()
			r.goroutines--
			r.mu.Unlock()
			r.signal()
		}()
		f()
	}()
}

// newSession registers an accepted connection. It returns nil when the run
// is closing; the caller then closes raw.
func (r *run) newSession(proto string, raw net.Conn) *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.nextID++
	s := &session{
		r:      r,
		id:     r.nextID,
		proto:  proto,
		remote: raw.RemoteAddr().String(),
	}
	s.log = r.log.With("proto", proto, "session", s.id, "remote", s.remote)
	s.conn = &trackedConn{Conn: raw, onClose: s.connClosed}
	r.sessions[s] = struct{}{}
	if proto == "ftp" {
		r.ftpByAddr[s.remote] = s
	}
	return s
}

func (r *run) removeSession(s *session) {
	s.releaseLimits()
	r.mu.Lock()
	delete(r.sessions, s)
	if r.ftpByAddr[s.remote] == s {
		delete(r.ftpByAddr, s.remote)
	}
	r.mu.Unlock()
	r.signal()
}

func (r *run) takeFTPSession(remote string) *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.ftpByAddr[remote]
	delete(r.ftpByAddr, remote)
	return s
}

// track registers an extra socket; false when the run is closing.
func (r *run) track(c io.Closer) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.extra[c] = struct{}{}
	return true
}

func (r *run) untrack(c io.Closer) {
	r.mu.Lock()
	delete(r.extra, c)
	r.mu.Unlock()
	r.signal()
}

func (r *run) sessionCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

func (r *run) idle() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.goroutines == 0 && len(r.sessions) == 0 && len(r.extra) == 0
}

// shutdown refuses new sessions and closes every socket of the run at once:
// listeners, passive listeners and data connections, then each session's
// connection (which also bars its storage access).
func (r *run) shutdown() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	close(r.done)
	r.cancel()
	extra := make([]io.Closer, 0, len(r.extra))
	for c := range r.extra {
		extra = append(extra, c)
	}
	sessions := make([]*session, 0, len(r.sessions))
	for s := range r.sessions {
		sessions = append(sessions, s)
	}
	r.mu.Unlock()

	for _, ln := range r.listeners {
		_ = ln.Close()
	}
	for _, c := range extra {
		_ = c.Close()
	}
	for _, s := range sessions {
		s.kill()
	}
}

// wait blocks until the run is idle or the timeout expires; on timeout it
// closes every remaining socket once more and reports what is left.
func (r *run) wait(timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if r.idle() {
			return nil
		}
		select {
		case <-r.wake:
		case <-deadline.C:
			r.mu.Lock()
			sessions := make([]*session, 0, len(r.sessions))
			for s := range r.sessions {
				sessions = append(sessions, s)
			}
			extra := make([]io.Closer, 0, len(r.extra))
			for c := range r.extra {
				extra = append(extra, c)
			}
			goroutines := r.goroutines
			r.mu.Unlock()
			for _, c := range extra {
				_ = c.Close()
			}
			for _, s := range sessions {
				s.kill()
				s.conn.forceClose()
				s.log.Error("session did not end in time", "login", s.loginName(), "busy", s.busyCount())
			}
			return fmt.Errorf("listeners: stop: %d sessions, %d goroutines and %d data sockets still open after %s",
				len(sessions), goroutines, len(extra), timeout)
		}
	}
}

// trackedConn is a client connection. Its owner (the SSH handler, or
// ftpserverlib's command loop when it ends) calls Close, which is idempotent
// and reported to the session; kill closes the socket at once from any
// goroutine (Stop, lease loss) and leaves the report to the owner's Close,
// so a session ends only once its handler has let go of it.
type trackedConn struct {
	net.Conn
	once    sync.Once
	killed  atomic.Bool
	onClose func()
}

func (c *trackedConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		if c.killed.Load() {
			err = nil // closed on purpose: nothing for the owner to report
		}
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

func (c *trackedConn) kill() {
	c.killed.Store(true)
	_ = c.Conn.Close()
}

// forceClose closes the socket and reports it closed even if the owner
// never does.
func (c *trackedConn) forceClose() {
	c.kill()
	_ = c.Close()
}
