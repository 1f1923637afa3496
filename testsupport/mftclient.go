package testsupport

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// SFTPSession is one SFTP login as the administrator, for tests that upload
// and download through a node's listener.
type SFTPSession struct {
	Raw  net.Conn
	SSH  *ssh.Client
	SFTP *sftp.Client
}

// DialSFTP logs in over SFTP as the administrator; timeout bounds the
// handshake (the connection has no deadline afterwards).
func DialSFTP(addr string, timeout time.Duration) (*SFTPSession, error) {
	raw, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(timeout))
	sc, chans, reqs, err := ssh.NewClientConn(raw, addr, &ssh.ClientConfig{User: "admin",
		Auth: []ssh.AuthMethod{ssh.Password(AdminPassword)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: timeout})
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	s := &SFTPSession{Raw: raw, SSH: ssh.NewClient(sc, chans, reqs)}
	if s.SFTP, err = sftp.NewClient(s.SSH); err != nil {
		s.Close()
		return nil, fmt.Errorf("sftp %s: %w", addr, err)
	}
	raw.SetDeadline(time.Time{})
	return s, nil
}

// Close ends the session.
func (s *SFTPSession) Close() {
	if s.SFTP != nil {
		s.SFTP.Close()
	}
	s.SSH.Close()
	s.Raw.Close()
}

// UploadSFTP writes data to name (relative to the administrator's home)
// and returns nil only once the server acknowledged the close: the upload
// is then acknowledged. timeout bounds the whole exchange.
func UploadSFTP(addr, name string, data []byte, timeout time.Duration) error {
	s, err := DialSFTP(addr, timeout)
	if err != nil {
		return err
	}
	defer s.Close()
	s.Raw.SetDeadline(time.Now().Add(timeout))
	f, err := s.SFTP.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("sftp open %s: %w", name, err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		f.Close()
		return fmt.Errorf("sftp write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sftp close %s: %w", name, err)
	}
	return nil
}

// DownloadSFTP reads name back and returns its SHA-256 (hex).
func DownloadSFTP(addr, name string, timeout time.Duration) (string, error) {
	s, err := DialSFTP(addr, timeout)
	if err != nil {
		return "", err
	}
	defer s.Close()
	s.Raw.SetDeadline(time.Now().Add(timeout))
	f, err := s.SFTP.Open(name)
	if err != nil {
		return "", fmt.Errorf("sftp open %s: %w", name, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := f.WriteTo(h); err != nil {
		return "", fmt.Errorf("sftp read %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// UploadFTP stores data as name over FTP (passive mode) as the
// administrator; nil means the server acknowledged the transfer (226).
func UploadFTP(addr, name string, data []byte, timeout time.Duration) error {
	c, err := dialFTP(addr, timeout)
	if err != nil {
		return err
	}
	defer c.Quit()
	if err := c.Login("admin", AdminPassword); err != nil {
		return fmt.Errorf("ftp login %s: %w", addr, err)
	}
	if err := c.Stor(name, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("ftp stor %s: %w", name, err)
	}
	return nil
}

// DownloadFTP reads name back over FTP and returns its SHA-256 (hex).
func DownloadFTP(addr, name string, timeout time.Duration) (string, error) {
	c, err := dialFTP(addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Quit()
	if err := c.Login("admin", AdminPassword); err != nil {
		return "", fmt.Errorf("ftp login %s: %w", addr, err)
	}
	r, err := c.Retr(name)
	if err != nil {
		return "", fmt.Errorf("ftp retr %s: %w", name, err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("ftp read %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// dialFTP connects with every connection (control and data) bounded by
// one deadline, so a frozen server cannot hang the client.
func dialFTP(addr string, timeout time.Duration) (*ftp.ServerConn, error) {
	deadline := time.Now().Add(timeout)
	return ftp.Dial(addr, ftp.DialWithDialFunc(func(network, a string) (net.Conn, error) {
		c, err := net.DialTimeout(network, a, time.Until(deadline))
		if err == nil {
			c.SetDeadline(deadline)
		}
		return c, err
	}))
}

// SHA256Hex is the SHA-256 of data in hex, as FileSHA256 reports it.
func SHA256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
