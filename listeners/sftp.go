package listeners

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

const loginExtension = "udmg-login"

var errAuthFailed = errors.New("authentication failed")

// sshConfig builds the SSH server configuration: password (and optionally
// public-key) login, aes128-gcm@openssh.com preferred, and the default
// server version "SSH-2.0-Go" that load balancers check.
func (r *run) sshConfig() *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		PasswordCallback: func(c ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
			if !r.allowed() {
				return nil, ErrNotActive
			}
			if err := r.checkPassword("sftp", c.RemoteAddr(), c.User(), string(password)); err != nil {
				return nil, err
			}
			return r.sshPermissions(c.User())
		},
	}
	if r.cfg.AuthenticateKey != nil {
		cfg.PublicKeyCallback = func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if !r.allowed() {
				return nil, ErrNotActive
			}
			if !validLogin(c.User()) || !r.cfg.AuthenticateKey(c.User(), key) {
				return nil, errAuthFailed
			}
			return r.sshPermissions(c.User())
		}
	}
	cfg.Ciphers = PreferredCiphers()
	// Each key exchange's signature takes one of the Guard's heavy-work
	// slots, shared with the password comparisons.
	cfg.AddHostKey(r.cfg.Guard.SSHHostKey(r.cfg.HostKey))
	return cfg
}

// sshPermissions lets login in, unless its account already holds every
// session it may: the client then reads why in the authentication banner.
func (r *run) sshPermissions(login string) (*ssh.Permissions, error) {
	if err := r.cfg.Limits.accountFull(r.accountKey(login), login); err != nil {
		r.log.Warn("SFTP login refused", "login", login, "err", err)
		return nil, &ssh.BannerError{Err: err, Message: err.Error() + "\r\n"}
	}
	return &ssh.Permissions{Extensions: map[string]string{loginExtension: login}}, nil
}

// PreferredCiphers puts AES-GCM first (x/crypto has no chacha20 assembly on
// amd64) and keeps every other default cipher; the transfer engine's SFTP
// client uses them too.
func PreferredCiphers() []string {
	out := []string{ssh.CipherAES128GCM}
	for _, c := range ssh.SupportedAlgorithms().Ciphers {
		if c != ssh.CipherAES128GCM {
			out = append(out, c)
		}
	}
	return out
}

// serveSSH accepts SSH connections until the listener is closed.
func (r *run) serveSSH(ln net.Listener, cfg *ssh.ServerConfig) {
	var delay time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if r.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			r.log.Warn("SFTP accept failed", "err", err, "retry", delay)
			select {
			case <-r.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		if !r.allowed() {
			r.log.Warn("lease not held: closing new SFTP connection", "remote", raw.RemoteAddr().String())
			_ = raw.Close()
			continue
		}
		release, ok := r.admitStartup("sftp", raw)
		if !ok {
			continue
		}
		s := r.newSession("sftp", raw)
		if s == nil {
			release()
			_ = raw.Close()
			continue
		}
		s.setStartup(release)
		r.spawn(func() { r.handleSSH(s, cfg) })
	}
}

// handleSSH serves one SSH connection; it returns when the connection is
// gone and every goroutine it started has ended.
func (r *run) handleSSH(s *session, cfg *ssh.ServerConfig) {
	defer s.endProtocol()
	defer s.conn.Close()

	// The whole handshake, authentication included, has LoginGrace.
	_ = s.conn.SetDeadline(time.Now().Add(r.cfg.LoginGrace))
	sconn, chans, reqs, err := ssh.NewServerConn(s.conn, cfg)
	s.loggedIn() // or failed: either way no longer waiting to log in
	if err == nil {
		r.cfg.Limits.trust(s.conn.RemoteAddr())
	}
	if err != nil {
		// Load balancer health checks close after the banner: not news.
		s.log.Debug("SSH handshake failed", "err", err)
		return
	}
	_ = s.conn.SetDeadline(time.Time{})

	login := sconn.Permissions.Extensions[loginExtension]
	var wg sync.WaitGroup
	defer wg.Wait()     // second: every goroutine of this connection
	defer sconn.Close() // first: ends chans, reqs and the channels
	wg.Add(1)
	go func() {
		defer wg.Done()
		ssh.DiscardRequests(reqs)
	}()

	if err := r.reserveAccount(s, login); err != nil {
		// Another session took the last place since the login check.
		s.log.Warn("SFTP session refused", "login", login, "err", err)
		_ = s.conn.SetDeadline(time.Now().Add(10 * time.Second))
		for nc := range chans {
			_ = nc.Reject(ssh.ResourceShortage, err.Error())
			break
		}
		return
	}
	home, err := r.openHome(login)
	if err == nil {
		err = s.setHome(login, home)
	}
	if err != nil {
		s.log.Warn("SFTP session refused", "login", login, "err", err)
		return
	}
	s.log.Info("SFTP session open", "login", login, "client", string(sconn.ClientVersion()))

	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only session channels are served")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.handleChannel(s, ch, creqs, &wg)
		}()
	}
	// chans is closed: the connection is gone.
}

// handleChannel serves the "sftp" subsystem on a session channel.
func (r *run) handleChannel(s *session, ch ssh.Channel, reqs <-chan *ssh.Request, wg *sync.WaitGroup) {
	defer ch.Close()
	start := make(chan struct{})
	reqsDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(reqsDone)
		started := false
		for req := range reqs {
			ok := false
			if !started && req.Type == "subsystem" && subsystemName(req.Payload) == "sftp" {
				ok, started = true, true
			}
			if req.WantReply {
				_ = req.Reply(ok, nil)
			}
			if ok {
				close(start)
			}
		}
	}()
	select {
	case <-start:
	case <-reqsDone:
		return
	}

	// Large requests (limitsStream) and reused packet buffers: together
	// they halve the server's CPU per byte (bench, make bench).
	srv := sftp.NewRequestServer(newLimitsStream(ch), sftpHandlers(s),
		sftp.WithRSMaxTxPacket(sftpMaxData), sftp.WithRSAllocator())
	err := srv.Serve()
	_ = srv.Close()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		s.log.Debug("SFTP subsystem ended", "err", err)
	}
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
}

func subsystemName(payload []byte) string {
	var p struct{ Name string }
	if err := ssh.Unmarshal(payload, &p); err != nil {
		return ""
	}
	return p.Name
}

// sftpHandler implements pkg/sftp's request handlers over the session's
// home jail.
type sftpHandler struct{ s *session }

var (
	_ sftp.OpenFileWriter       = (*sftpHandler)(nil)
	_ sftp.PosixRenameFileCmder = (*sftpHandler)(nil)
	_ sftp.LstatFileLister      = (*sftpHandler)(nil)
	_ sftp.FileReader           = (*sftpHandler)(nil)
)

func sftpHandlers(s *session) sftp.Handlers {
	h := &sftpHandler{s: s}
	return sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}
}

func (h *sftpHandler) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	f, err := h.s.openTransfer(r.Filepath, os.O_RDONLY, false, false)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (h *sftpHandler) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	f, err := h.openWrite(r)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (h *sftpHandler) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	f, err := h.openWrite(r)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (h *sftpHandler) openWrite(r *sftp.Request) (*guardedFile, error) {
	pf := r.Pflags()
	flag := os.O_WRONLY
	if pf.Read {
		flag = os.O_RDWR
	}
	if pf.Creat {
		flag |= os.O_CREATE
	}
	if pf.Trunc {
		flag |= os.O_TRUNC
	}
	if pf.Excl {
		flag |= os.O_EXCL
	}
	// Append opens write at the offsets the client gives (see WriteAt),
	// not with O_APPEND: requests are served concurrently, so appending in
	// arrival order would scramble a pipelined upload (OpenSSH reput).
	return h.s.openTransfer(r.Filepath, flag, pf.Append, true)
}

func (h *sftpHandler) Filecmd(r *sftp.Request) error {
	names := []string{r.Filepath}
	if r.Method == "Rename" {
		names = append(names, r.Target)
	}
	return h.s.do(func(root *os.Root) error {
		p := relPath(r.Filepath)
		switch r.Method {
		case "Setstat":
			if err := setstat(root, p, r); err != nil {
				return err
			}
			if r.AttrFlags().Size {
				h.s.logChange("truncate", r.Filepath, int64(r.Attributes().Size), 0)
			}
			return nil
		case "Rename":
			t := relPath(r.Target)
			if _, err := root.Lstat(t); err == nil {
				return os.ErrExist
			}
			if err := root.Rename(p, t); err != nil {
				return err
			}
			h.s.logRename(r.Filepath, r.Target)
			return nil
		case "Rmdir":
			fi, err := root.Lstat(p)
			if err != nil {
				return err
			}
			if !fi.IsDir() {
				return fmt.Errorf("%s: not a directory", r.Filepath)
			}
			return root.Remove(p)
		case "Remove":
			fi, err := root.Lstat(p)
			if err != nil {
				return err
			}
			if fi.IsDir() {
				return fmt.Errorf("%s: is a directory", r.Filepath)
			}
			if err := root.Remove(p); err != nil {
				return err
			}
			h.s.logChange("delete", r.Filepath, 0, 0)
			return nil
		case "Mkdir":
			return root.Mkdir(p, homePerm)
		}
		// Symlink, Link and anything new: not offered.
		return sftp.ErrSSHFxOpUnsupported
	}, names...)
}

func (h *sftpHandler) PosixRename(r *sftp.Request) error {
	return h.s.do(func(root *os.Root) error {
		if err := root.Rename(relPath(r.Filepath), relPath(r.Target)); err != nil {
			return err
		}
		h.s.logRename(r.Filepath, r.Target)
		return nil
	}, r.Filepath, r.Target)
}

func setstat(root *os.Root, p string, r *sftp.Request) error {
	flags := r.AttrFlags()
	attrs := r.Attributes()
	if flags.Size {
		f, err := root.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		err = f.Truncate(int64(attrs.Size))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if flags.Permissions {
		if err := root.Chmod(p, attrs.FileMode().Perm()); err != nil {
			return err
		}
	}
	if flags.Acmodtime {
		if err := root.Chtimes(p, attrs.AccessTime(), attrs.ModTime()); err != nil {
			return err
		}
	}
	// UID/GID changes are ignored: accounts do not own system users.
	return nil
}

func (h *sftpHandler) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	var out listerAt
	err := h.s.do(func(root *os.Root) error {
		p := relPath(r.Filepath)
		switch r.Method {
		case "List":
			d, err := root.Open(p)
			if err != nil {
				return err
			}
			defer d.Close()
			infos, err := d.Readdir(-1)
			if err != nil {
				return err
			}
			infos = visible(infos)
			sort.Slice(infos, func(i, j int) bool { return infos[i].Name() < infos[j].Name() })
			out = infos
			return nil
		case "Stat":
			fi, err := h.s.stat(root, r.Filepath, false)
			if err != nil {
				return err
			}
			out = listerAt{fi}
			return nil
		}
		// Readlink is not offered: link targets are not the client's business.
		return sftp.ErrSSHFxOpUnsupported
	}, r.Filepath)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (h *sftpHandler) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	var out listerAt
	err := h.s.do(func(root *os.Root) error {
		fi, err := h.s.stat(root, r.Filepath, true)
		if err != nil {
			return err
		}
		out = listerAt{fi}
		return nil
	}, r.Filepath)
	if err != nil {
		return nil, err
	}
	return out, nil
}

type listerAt []os.FileInfo

func (l listerAt) ListAt(dst []os.FileInfo, offset int64) (int, error) {
	if offset >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(dst, l[offset:])
	if n < len(dst) {
		return n, io.EOF
	}
	return n, nil
}
