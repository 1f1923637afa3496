package transfer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/textproto"
	"os"
	"sync/atomic"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/listeners"
)

// Concurrent SFTP requests per file; packets stay at pkg/sftp's default
// 32 KiB (see DEPENDENCIES.md on issue #658).
const sftpConcurrency = 64

type sftpSession struct {
	conns  conns
	ssh    *ssh.Client
	client *sftp.Client
}

func dialSFTP(ctx context.Context, local net.Addr, p fsm.Partner, login, password string, key []byte) (*sftpSession, error) {
	// A partner is only trusted with its known host key: never connect to
	// whoever answers at its address.
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(p.HostKey))
	if err != nil {
		return nil, permanent(fsm.TeBadAuthentication, fmt.Errorf("partner %s has no usable host key (set hostKey): %w", p.Name, err))
	}
	hostKey := func(_ string, _ net.Addr, got ssh.PublicKey) error {
		if !bytes.Equal(got.Marshal(), want.Marshal()) {
			return permanent(fsm.TeBadAuthentication, fmt.Errorf("partner %s presented host key %s, not the configured %s", p.Name, ssh.FingerprintSHA256(got), ssh.FingerprintSHA256(want)))
		}
		return nil
	}
	var auth []ssh.AuthMethod
	if len(key) > 0 {
		signer, err := ssh.ParsePrivateKey(key)
		if err != nil {
			return nil, permanent(fsm.TeBadAuthentication, fmt.Errorf("remote account %s private key: %w", login, err))
		}
		auth = append(auth, ssh.PublicKeys(signer))
	}
	if password != "" {
		auth = append(auth, ssh.Password(password))
	}
	s := &sftpSession{conns: conns{local: local}}
	raw, err := s.conns.dial(ctx, p.Address)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: login, Auth: auth, HostKeyCallback: hostKey, Timeout: 15 * time.Second}
	cfg.Ciphers = listeners.PreferredCiphers()
	raw.SetDeadline(time.Now().Add(15 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(raw, p.Address, cfg)
	if err != nil {
		s.conns.closeAll()
		return nil, fmt.Errorf("ssh to partner %s: %w", p.Name, err)
	}
	raw.SetDeadline(time.Time{})
	s.ssh = ssh.NewClient(c, chans, reqs)
	s.client, err = sftp.NewClient(s.ssh, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(sftpConcurrency))
	if err != nil {
		s.close()
		return nil, fmt.Errorf("sftp to partner %s: %w", p.Name, err)
	}
	return s, nil
}

// close closes the connection first: sftp.Client.Close waits for its
// reader, which a partner that no longer answers (a network cut, or this
// node's service address just dropped by a fence) would hold forever.
func (s *sftpSession) close() error {
	s.conns.closeAll()
	if s.client != nil {
		s.client.Close()
	}
	return nil
}

// aliveWithin bounds the round trip that shows an idle session still open:
// a worker in it cannot be cancelled, and a fence waits for every worker.
const aliveWithin = 3 * time.Second

func (s *sftpSession) alive() error {
	answered := make(chan error, 1)
	go func() {
		_, err := s.client.Getwd()
		answered <- err
	}()
	select {
	case err := <-answered:
		return err
	case <-time.After(aliveWithin):
		s.conns.closeAll() // ends the Getwd above
		<-answered
		return fmt.Errorf("partner session: no answer within %s", aliveWithin)
	}
}

func (s *sftpSession) size(remote string) (int64, error) {
	fi, err := s.client.Stat(remote)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (s *sftpSession) push(remote string, src io.ReaderAt, off, size int64, cp *checkpointer) (int64, error) {
	if dir := remoteDir(remote); dir != "." && dir != "/" {
		if err := s.client.MkdirAll(dir); err != nil {
			return off, fmt.Errorf("remote directory %s: %w", dir, err)
		}
	}
	f, err := s.client.OpenFile(remote, os.O_WRONLY|os.O_CREATE)
	if err != nil {
		return off, fmt.Errorf("remote file %s: %w", remote, err)
	}
	defer f.Close()
	// Bytes past the checkpoint may have holes (concurrent writes).
	if err := f.Truncate(off); err != nil {
		return off, fmt.Errorf("truncate remote file to %d: %w", off, err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off, err
	}
	for off < size {
		n := min(cp.segment(), size-off)
		w, err := f.ReadFromWithConcurrency(io.NewSectionReader(src, off, n), sftpConcurrency)
		if err != nil {
			return off, err
		}
		if w != n {
			return off, fmt.Errorf("%w: wrote %d of %d bytes at %d", errBadSize, w, n, off)
		}
		off += n
		if err := cp.reached(off); err != nil {
			return off, err
		}
	}
	if err := f.Close(); err != nil {
		return off, fmt.Errorf("close remote file: %w", err)
	}
	return off, nil
}

func (s *sftpSession) pull(remote string, dst io.Writer, off int64, cp *checkpointer) (int64, error) {
	f, err := s.client.Open(remote)
	if err != nil {
		return off, fmt.Errorf("remote file %s: %w", remote, err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off, err
	}
	return copyCheckpointed(dst, f, off, cp)
}

// copyCheckpointed copies src to dst in 1 MiB reads (pkg/sftp reads a
// large buffer with concurrent requests), telling cp after each.
func copyCheckpointed(dst io.Writer, src io.Reader, off int64, cp *checkpointer) (int64, error) {
	buf := make([]byte, 1<<20)
	for {
		n, rerr := io.ReadFull(src, buf)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return off, err
			}
			off += int64(n)
			if err := cp.reached(off); err != nil {
				return off, err
			}
		}
		switch {
		case errors.Is(rerr, io.EOF), errors.Is(rerr, io.ErrUnexpectedEOF):
			return off, nil
		case rerr != nil:
			return off, rerr
		}
	}
}

type ftpSession struct {
	conns conns
	c     *ftp.ServerConn
}

func dialFTP(ctx context.Context, local net.Addr, p fsm.Partner, login, password string) (*ftpSession, error) {
	s := &ftpSession{conns: conns{local: local}}
	var cfg *tls.Config
	if p.TLS {
		var err error
		if cfg, err = partnerTLS(p); err != nil {
			return nil, permanent(fsm.TeBadAuthentication, err)
		}
	}
	// The library upgrades the control connection itself (AUTH TLS) but
	// leaves the data connections of a custom dialer in clear: every dial
	// after the first is a data connection, protected here (PROT P).
	var dials atomic.Int32
	dial := func(_, addr string) (net.Conn, error) {
		conn, err := s.conns.dial(ctx, addr)
		if err != nil || cfg == nil || dials.Add(1) == 1 {
			return conn, err
		}
		return tls.Client(conn, cfg), nil
	}
	opts := []ftp.DialOption{ftp.DialWithDialFunc(dial), ftp.DialWithDisabledEPSV(false)}
	if cfg != nil {
		opts = append(opts, ftp.DialWithExplicitTLS(cfg))
	}
	c, err := ftp.Dial(p.Address, opts...)
	if err != nil {
		s.conns.closeAll()
		return nil, fmt.Errorf("ftp to partner %s: %w", p.Name, err)
	}
	s.c = c
	if err := c.Login(login, password); err != nil {
		s.close()
		return nil, fmt.Errorf("ftp login to partner %s: %w", p.Name, err)
	}
	return s, nil
}

func (s *ftpSession) close() error {
	s.conns.closeAll()
	return nil
}

func (s *ftpSession) size(remote string) (int64, error) {
	n, err := s.c.FileSize(remote)
	var te *textproto.Error
	if errors.As(err, &te) && te.Code == ftp.StatusFileUnavailable {
		return 0, fmt.Errorf("%s: %w", remote, fs.ErrNotExist)
	}
	return n, err
}

// push sends with REST+STOR. The partner acknowledges nothing before the
// end, so checkpoints only say what was handed to the connection; a resume
// starts at the smaller of the checkpoint and the partner's SIZE.
func (s *ftpSession) push(remote string, src io.ReaderAt, off, size int64, cp *checkpointer) (int64, error) {
	r := &countingReader{r: io.NewSectionReader(src, off, size-off), off: off, cp: cp}
	if err := s.c.StorFrom(remote, r, uint64(off)); err != nil {
		return r.off, err
	}
	return r.off, nil
}

func (s *ftpSession) pull(remote string, dst io.Writer, off int64, cp *checkpointer) (int64, error) {
	resp, err := s.c.RetrFrom(remote, uint64(off))
	if err != nil {
		return off, fmt.Errorf("retrieve %s: %w", remote, err)
	}
	n, err := copyCheckpointed(dst, resp, off, cp)
	if cerr := resp.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return n, err
}

// countingReader tells the checkpointer how far a stream has gone.
type countingReader struct {
	r   io.Reader
	off int64
	cp  *checkpointer
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.off += int64(n)
	if n > 0 {
		if cerr := c.cp.reached(c.off); cerr != nil {
			c.err = cerr
			return n, nil
		}
	}
	return n, err
}
