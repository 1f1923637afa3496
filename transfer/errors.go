package transfer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/textproto"
	"strings"
	"syscall"

	"github.com/pkg/sftp"

	"github.com/udmg/gateway/confine"
	"github.com/udmg/gateway/fsm"
)

// failure is how the engine shows and handles a transfer's error: its
// Waarp Gateway code, and whether trying again can help. A permanent
// failure (the partner's identity or ours refused, a missing file, a
// forbidden path) ends in ERROR at once; a transient one (refused, reset or
// timed-out connections) is retried with the transfer's backoff.
type failure struct {
	code      string
	permanent bool
}

// codedError gives a failure its code and says whether a retry can mend
// it, where the error itself does not tell: a partner whose host key or
// certificate is not the configured one, unusable credentials, the
// gateway's own storage or secrets.
type codedError struct {
	code      string
	permanent bool
	err       error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// permanent wraps err as a failure with code that is not retried.
func permanent(code string, err error) error {
	return &codedError{code: code, permanent: true, err: err}
}

// transient wraps err as a failure with code that is retried.
func transient(code string, err error) error { return &codedError{code: code, err: err} }

// classify names the cause of a transfer's failure from the errors of the
// libraries themselves (x/crypto/ssh, pkg/sftp status codes, FTP reply
// codes, net and syscall errors, crypto/tls and x509), not from their text,
// except where a library has no type for it (ssh client authentication).
func classify(err error) failure {
	var (
		coded     *codedError
		certErr   *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		badHost   x509.HostnameError
		invalid   x509.CertificateInvalidError
		status    *sftp.StatusError
		reply     *textproto.Error
		dnsErr    *net.DNSError
		opErr     *net.OpError
		netErr    net.Error
	)
	switch {
	case errors.As(err, &coded):
		return failure{coded.code, coded.permanent}
	case errors.Is(err, ErrNotActive):
		return failure{fsm.TeShuttingDown, false}
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &badHost), errors.As(err, &invalid):
		return failure{fsm.TeBadAuthentication, true}
	case sshAuthRefused(err):
		return failure{fsm.TeBadAuthentication, true}
	case errors.Is(err, fsm.ErrUnknownObject):
		return failure{fsm.TeUnknownRemote, true}
	case errors.Is(err, errBadSize):
		return failure{fsm.TeBadSize, false}
	// pkg/sftp turns SSH_FX_NO_SUCH_FILE and SSH_FX_PERMISSION_DENIED
	// into fs.ErrNotExist and fs.ErrPermission, as os does locally.
	case errors.Is(err, fs.ErrNotExist):
		return failure{fsm.TeFileNotFound, true}
	case errors.Is(err, fs.ErrPermission), errors.Is(err, confine.ErrProtected):
		return failure{fsm.TeForbidden, true}
	case errors.As(err, &status):
		return sftpFailure(status)
	case errors.Is(err, sftp.ErrSSHFxConnectionLost), errors.Is(err, sftp.ErrSSHFxNoConnection):
		return failure{fsm.TeConnectionReset, false}
	case errors.As(err, &reply):
		return ftpFailure(reply.Code)
	case errors.As(err, &dnsErr):
		// A name that does not resolve may be a resolver's outage.
		return failure{fsm.TeUnknownRemote, false}
	case errors.As(err, &opErr) && opErr.Op == "dial":
		// Refused, unreachable, or timed out: the partner may come up.
		return failure{fsm.TeConnection, false}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return failure{fsm.TeConnectionReset, false}
	case errors.As(err, &netErr) && netErr.Timeout():
		return failure{fsm.TeConnection, false}
	case errors.As(err, &netErr):
		return failure{fsm.TeConnectionReset, false}
	}
	return failure{fsm.TeDataTransfer, false}
}

// sshAuthRefused reports a partner refusing every credential offered:
// x/crypto/ssh has no error type for it, only this text (client_auth.go).
func sshAuthRefused(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "ssh: unable to authenticate") || strings.Contains(msg, "ssh: too many authentication attempts")
}

// sftpFailure maps the SFTP status codes that pkg/sftp leaves as they are.
func sftpFailure(s *sftp.StatusError) failure {
	switch s.FxCode() {
	case sftp.ErrSSHFxNoSuchFile:
		return failure{fsm.TeFileNotFound, true}
	case sftp.ErrSSHFxPermissionDenied:
		return failure{fsm.TeForbidden, true}
	case sftp.ErrSSHFxConnectionLost, sftp.ErrSSHFxNoConnection:
		return failure{fsm.TeConnectionReset, false}
	case sftp.ErrSSHFxOpUnsupported:
		return failure{fsm.TeDataTransfer, true}
	}
	return failure{fsm.TeDataTransfer, false}
}

// ftpFailure maps an FTP reply code (RFC 959: 4xx transient, 5xx
// permanent).
func ftpFailure(code int) failure {
	switch {
	case code == 530 || code == 532: // not logged in, need an account
		return failure{fsm.TeBadAuthentication, true}
	case code == 550: // file unavailable
		return failure{fsm.TeFileNotFound, true}
	case code == 553: // file name not allowed
		return failure{fsm.TeForbidden, true}
	case code == 421: // service not available, closing
		return failure{fsm.TeConnection, false}
	case code == 425 || code == 426: // data connection failed or closed
		return failure{fsm.TeConnectionReset, false}
	case code >= 500:
		return failure{fsm.TeDataTransfer, true}
	}
	return failure{fsm.TeDataTransfer, false}
}
