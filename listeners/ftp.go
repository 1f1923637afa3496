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
	"sort"
	"sync"
	"sync/atomic"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/spf13/afero"
)

type ftpServer interface{ Serve() error }

// newFTPServer prepares an ftpserverlib server on an already bound listener.
// The server is never stopped through FtpServer.Stop: the run closes the
// listener, the control connections, the passive listeners and the data
// connections itself (ftpserverlib only closes its listener).
func (r *run) newFTPServer(ln net.Listener) (*ftpserver.FtpServer, error) {
	d := &ftpDriver{r: r}
	d.settings = &ftpserver.Settings{
		Listener:            &ftpListener{Listener: ln, r: r},
		ListenAddr:          ln.Addr().String(),
		PublicIPResolver:    d.publicIP,
		Banner:              "UDMG gateway",
		DisableActiveMode:   true, // data connections must be passive: tracked, fenced, load-balanced
		DefaultTransferType: ftpserver.TransferTypeBinary,
		TLSRequired:         ftpserver.ClearOrEncrypted,
		// An idle control connection is closed after 5 minutes (the
		// library's default is 15), and a passive data connection must
		// arrive within PassiveIdle of the transfer command.
		IdleTimeout:       int(ftpIdleTimeout / time.Second),
		ConnectionTimeout: max(1, int(r.cfg.PassiveIdle/time.Second)),
	}
	if r.cfg.FTPTLS != nil && r.cfg.FTPTLSRequired {
		d.settings.TLSRequired = ftpserver.MandatoryEncryption
	}
	if r.cfg.PassiveMin > 0 && r.cfg.PassiveMax >= r.cfg.PassiveMin {
		d.settings.PassiveTransferPortRange = ftpserver.PortRange{Start: r.cfg.PassiveMin, End: r.cfg.PassiveMax}
	}
	srv := ftpserver.NewFtpServer(d)
	// The library reports every connection at Info, health checks
	// included; only its warnings reach the operator's log.
	srv.Logger = slog.New(quietHandler{r.log.Handler()}).With("proto", "ftp")
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	return srv, nil
}

// ftpListener is the FTP control listener: it refuses connections while
// the lease is not held and registers each accepted connection as a session.
type ftpListener struct {
	net.Listener
	r *run
}

func (l *ftpListener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			// Returned as is: ftpserverlib ends Serve quietly on a closed listener.
			return nil, err
		}
		if !l.r.allowed() {
			l.r.log.Warn("lease not held: closing new FTP connection", "remote", raw.RemoteAddr().String())
			_ = raw.Close()
			continue
		}
		release, ok := l.r.admitStartup("ftp", raw)
		if !ok {
			continue
		}
		s := l.r.newSession("ftp", raw)
		if s == nil {
			release()
			_ = raw.Close()
			continue
		}
		s.setStartup(release)
		s.startGrace(l.r.cfg.LoginGrace)
		return s.conn, nil
	}
}

// ftpIdleTimeout closes an FTP control connection without a command.
const ftpIdleTimeout = 5 * time.Minute

// dataIdle closes a passive data connection on which the client neither
// sends nor reads anything for that long, freeing its port.
const dataIdle = 2 * time.Minute

// passiveListener wraps an FTP passive listener so that Stop can close it and
// its data connections, and data connections are refused without the lease.
// A listener whose data connection has not come within PassiveIdle is
// closed, so that sessions cannot hoard the passive ports: ftpserverlib
// keeps at most one passive listener per session (a new PASV closes the
// previous one), and this frees it when it goes unused.
type passiveListener struct {
	net.Listener
	r     *run
	once  sync.Once
	err   error
	inUse atomic.Bool

	mu   sync.Mutex
	idle *time.Timer // frees the port if no data connection comes
}

func (l *passiveListener) stopIdle() {
	l.mu.Lock()
	if l.idle != nil {
		l.idle.Stop()
	}
	l.mu.Unlock()
}

func (l *passiveListener) Accept() (net.Conn, error) {
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.inUse.Store(true)
	l.stopIdle()
	if !l.r.allowed() {
		_ = raw.Close()
		return nil, ErrNotActive
	}
	c := &trackedConn{Conn: &idleConn{Conn: raw, idle: dataIdle}}
	c.onClose = func() { l.r.untrack(c) }
	if !l.r.track(c) {
		_ = raw.Close()
		return nil, ErrSessionClosed
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		return &dataConn{trackedConn: c, tcp: tcp}, nil
	}
	return c, nil
}

// dataConn is a passive data connection that sends downloads with
// sendfile(2), as vsftpd does: io.Copy's buffer costs a second copy of
// every byte, through user space, which made the gateway's downloads half
// as fast as vsftpd's; and reads uploads recvBuffer at a time. With FTPS,
// the TLS connection wraps it and only reads and writes it.
type dataConn struct {
	*trackedConn
	tcp *net.TCPConn
}

// sendChunk is what one sendfile of a download sends between lease checks.
const sendChunk = 1 << 20

// recvBuffer is what one read of an upload takes at most: with io.Copy's
// 32 KiB, a 1 GiB upload cost the gateway 0.81-1 s of CPU in five runs of
// make bench -only=ftp, with this 0.62-0.71 s in four of five (1.08 s in
// one; vsftpd 0.57-0.76 s).
const recvBuffer = 256 << 10

// WriteTo is io.Copy's path for a STOR or APPE.
func (c *dataConn) WriteTo(w io.Writer) (int64, error) {
	return io.CopyBuffer(w, struct{ io.Reader }{c.trackedConn}, make([]byte, recvBuffer))
}

// ReadFrom is io.Copy's path for a RETR: a session's file goes out by
// sendfile in chunks, each checked and counted as guardedFile.Read would;
// anything else (ASCII-mode conversion) is copied.
func (c *dataConn) ReadFrom(r io.Reader) (int64, error) {
	g, ok := r.(*guardedFile)
	if !ok {
		return io.Copy(c.trackedConn, r)
	}
	var sent int64
	for {
		if err := g.s.guard(); err != nil {
			return sent, err
		}
		_ = c.tcp.SetWriteDeadline(time.Now().Add(dataIdle))
		n, err := c.tcp.ReadFrom(io.LimitReader(g.f, sendChunk))
		_, _ = g.moved(int(n), nil)
		sent += n
		if err != nil || n < sendChunk {
			return sent, err
		}
	}
}

func (l *passiveListener) Close() error {
	l.stopIdle()
	return l.shut()
}

func (l *passiveListener) shut() error {
	l.once.Do(func() {
		l.err = l.Listener.Close()
		l.r.untrack(l)
	})
	return l.err
}

// ftpDriver is ftpserverlib's MainDriver.
type ftpDriver struct {
	r        *run
	settings *ftpserver.Settings
}

var (
	_ ftpserver.MainDriver                        = (*ftpDriver)(nil)
	_ ftpserver.MainDriverExtensionPassiveWrapper = (*ftpDriver)(nil)
)

func (d *ftpDriver) GetSettings() (*ftpserver.Settings, error) { return d.settings, nil }

func (d *ftpDriver) GetTLSConfig() (*tls.Config, error) {
	if d.r.cfg.FTPTLS == nil {
		return nil, errors.New("TLS is not configured")
	}
	return d.r.cfg.FTPTLS, nil
}

func (d *ftpDriver) ClientConnected(cc ftpserver.ClientContext) (string, error) {
	s := d.r.takeFTPSession(cc.RemoteAddr().String())
	cc.SetExtra(s)
	if s == nil || d.r.isClosed() {
		return "service not available", ErrSessionClosed
	}
	if !d.r.allowed() {
		s.kill()
		return "service not available", ErrNotActive
	}
	s.log.Debug("FTP control connection open")
	return "UDMG gateway FTP service ready", nil
}

// ClientDisconnected is called by ftpserverlib when the command loop ends,
// before it closes the transfer and the control connection.
func (d *ftpDriver) ClientDisconnected(cc ftpserver.ClientContext) {
	if s, ok := cc.Extra().(*session); ok && s != nil {
		s.endProtocol()
	}
}

func (d *ftpDriver) AuthUser(cc ftpserver.ClientContext, user, pass string) (ftpserver.ClientDriver, error) {
	s, _ := cc.Extra().(*session)
	if s == nil {
		return nil, ErrSessionClosed
	}
	if !d.r.allowed() {
		s.kill()
		return nil, ErrNotActive
	}
	if err := d.r.checkPassword("ftp", cc.RemoteAddr(), user, pass); err != nil {
		return nil, err
	}
	s.loggedIn()
	d.r.cfg.Limits.trust(cc.RemoteAddr())
	if err := d.r.reserveAccount(s, user); err != nil {
		s.log.Warn("FTP session refused", "login", user, "err", err)
		return nil, err
	}
	home, err := d.r.openHome(user)
	if err == nil {
		err = s.setHome(user, home)
	}
	if err != nil {
		s.log.Warn("FTP session refused", "login", user, "err", err)
		return nil, errors.New("home directory unavailable")
	}
	s.log.Info("FTP session open", "login", user)
	return &ftpFS{s: s}, nil
}

func (d *ftpDriver) WrapPassiveListener(ln net.Listener) (net.Listener, error) {
	pl := &passiveListener{Listener: ln, r: d.r}
	pl.mu.Lock()
	pl.idle = time.AfterFunc(d.r.cfg.PassiveIdle, func() {
		if !pl.inUse.Load() {
			d.r.log.Debug("FTP passive listener unused: closed", "addr", ln.Addr().String(), "after", d.r.cfg.PassiveIdle)
			_ = pl.shut()
		}
	})
	pl.mu.Unlock()
	if !d.r.allowed() {
		_ = pl.Close()
		return nil, ErrNotActive
	}
	if !d.r.track(pl) {
		_ = pl.Close()
		return nil, ErrSessionClosed
	}
	return pl, nil
}

// idleConn is a data connection that fails a read or write on which the
// client has been silent for idle.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(b []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(b)
}

func (c *idleConn) Write(b []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	return c.Conn.Write(b)
}

// publicIP answers the address for PASV replies: PublicHost (an IPv4
// address or a name resolved now), else the local address of the control
// connection.
func (d *ftpDriver) publicIP(cc ftpserver.ClientContext) (string, error) {
	host := d.r.cfg.PublicHost
	if host == "" {
		if ta, ok := cc.LocalAddr().(*net.TCPAddr); ok {
			if ip4 := ta.IP.To4(); ip4 != nil {
				return ip4.String(), nil
			}
			return "", fmt.Errorf("control connection address %s is not IPv4; set PublicHost", ta.IP)
		}
		h, _, err := net.SplitHostPort(cc.LocalAddr().String())
		if err != nil {
			return "", err
		}
		host = h
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip4 := ip.To4(); ip4 != nil {
			return ip4.String(), nil
		}
		return "", fmt.Errorf("PublicHost %s is not IPv4", host)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", host)
	if err != nil {
		return "", fmt.Errorf("resolve PublicHost: %w", err)
	}
	return ips[0].String(), nil
}

// ftpFS is the ClientDriver of a logged-in FTP session: an afero.Fs over
// the session's home jail (os.Root), every call lease-checked.
type ftpFS struct{ s *session }

var (
	_ ftpserver.ClientDriver                      = (*ftpFS)(nil)
	_ ftpserver.ClientDriverExtentionFileTransfer = (*ftpFS)(nil)
	_ ftpserver.ClientDriverExtensionFileList     = (*ftpFS)(nil)
	_ ftpserver.ClientDriverExtensionRemoveDir    = (*ftpFS)(nil)
)

var errNotPermitted = errors.New("operation not permitted")

func (f *ftpFS) Name() string { return "udmg-home" }

func (f *ftpFS) Create(name string) (afero.File, error) {
	return f.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, filePerm)
}

func (f *ftpFS) Open(name string) (afero.File, error) {
	return f.OpenFile(name, os.O_RDONLY, 0)
}

// OpenFile opens name; with write flags it is an upload (staging file,
// renamed into place at Close), as from GetHandle.
func (f *ftpFS) OpenFile(name string, flag int, _ os.FileMode) (afero.File, error) {
	var g *guardedFile
	var err error
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 {
		g, err = f.s.openTransfer(name, flag, false, true)
	} else {
		g, err = f.s.openFile(name, flag)
	}
	if err != nil {
		return nil, err
	}
	return g, nil
}

// GetHandle serves STOR, APPE (O_APPEND), REST+STOR (offset, then Seek by
// ftpserverlib) and RETR.
func (f *ftpFS) GetHandle(name string, flags int, _ int64) (ftpserver.FileTransfer, error) {
	g, err := f.s.openTransfer(name, flags, false, flags&(os.O_WRONLY|os.O_RDWR) != 0)
	if err != nil {
		return nil, err
	}
	return g, nil
}

func (f *ftpFS) ReadDir(name string) ([]os.FileInfo, error) {
	var infos []os.FileInfo
	err := f.s.do(func(root *os.Root) error {
		d, err := root.Open(relPath(name))
		if err != nil {
			return err
		}
		defer d.Close()
		infos, err = d.Readdir(-1)
		infos = visible(infos)
		return err
	}, name)
	if err != nil {
		return nil, err
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name() < infos[j].Name() })
	return infos, nil
}

func (f *ftpFS) Mkdir(name string, _ os.FileMode) error {
	return f.s.do(func(root *os.Root) error { return root.Mkdir(relPath(name), homePerm) }, name)
}

func (f *ftpFS) MkdirAll(name string, _ os.FileMode) error {
	return f.s.do(func(root *os.Root) error { return root.MkdirAll(relPath(name), homePerm) }, name)
}

func (f *ftpFS) Remove(name string) error {
	return f.s.do(func(root *os.Root) error {
		if err := root.Remove(relPath(name)); err != nil {
			return err
		}
		f.s.logChange("delete", name, 0, 0)
		return nil
	}, name)
}

func (f *ftpFS) RemoveDir(name string) error {
	return f.s.do(func(root *os.Root) error {
		p := relPath(name)
		fi, err := root.Lstat(p)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", name)
		}
		return root.Remove(p)
	}, name)
}

func (f *ftpFS) RemoveAll(name string) error {
	return f.s.do(func(root *os.Root) error {
		p := relPath(name)
		if p == "." {
			return errNotPermitted
		}
		if err := root.RemoveAll(p); err != nil {
			return err
		}
		f.s.logChange("delete", name, 0, 0)
		return nil
	}, name)
}

func (f *ftpFS) Rename(oldname, newname string) error {
	return f.s.do(func(root *os.Root) error {
		if err := root.Rename(relPath(oldname), relPath(newname)); err != nil {
			return err
		}
		f.s.logRename(oldname, newname)
		return nil
	}, oldname, newname)
}

// Stat answers SIZE and MDTM too: for a file not there yet, the committed
// part of the client's cut upload of it (see session.stat).
func (f *ftpFS) Stat(name string) (os.FileInfo, error) {
	var fi os.FileInfo
	err := f.s.do(func(root *os.Root) error {
		var err error
		fi, err = f.s.stat(root, name, false)
		return err
	}, name)
	if err != nil {
		return nil, err
	}
	return fi, nil
}

func (f *ftpFS) Chmod(name string, mode os.FileMode) error {
	return f.s.do(func(root *os.Root) error { return root.Chmod(relPath(name), mode.Perm()) }, name)
}

func (f *ftpFS) Chown(string, int, int) error { return errNotPermitted }

func (f *ftpFS) Chtimes(name string, atime, mtime time.Time) error {
	return f.s.do(func(root *os.Root) error { return root.Chtimes(relPath(name), atime, mtime) }, name)
}

// quietHandler lowers a library's informational records to debug level.
type quietHandler struct{ slog.Handler }

func (h quietHandler) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level < slog.LevelWarn {
		rec.Level = slog.LevelDebug
		if !h.Handler.Enabled(ctx, rec.Level) {
			return nil
		}
	}
	return h.Handler.Handle(ctx, rec)
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, max(l, slog.LevelDebug))
}

func (h quietHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(a)}
}
func (h quietHandler) WithGroup(n string) slog.Handler { return quietHandler{h.Handler.WithGroup(n)} }
