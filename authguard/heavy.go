package authguard

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"io"
	"runtime"
	"time"

	"golang.org/x/crypto/ssh"
)

// Heavy work. A bcrypt comparison costs tens of milliseconds of one core, a
// key-exchange or TLS signature up to a few (an RSA host key or
// certificate): the work a client can make the node do before it proves
// anything. All of it takes one of the Guard's slots, so that a storm of
// connections keeps at most Concurrency cores busy and the lease renewals
// find a core free instead of waiting for preemption among hundreds of
// handshakes. The slots are taken only around the computation itself, never
// across a network round trip, so that a client that stalls holds none.

// DefaultConcurrency is max(1, GOMAXPROCS-1): every core but one.
func DefaultConcurrency() int { return max(1, runtime.GOMAXPROCS(0)-1) }

// DefaultHandshakeWait bounds how long a handshake's signature waits for a
// slot (Options.HandshakeWait): past it the handshake fails and the
// connection is closed, and the client retries later, rather than the node
// queueing work it cannot do in time.
const DefaultHandshakeWait = 5 * time.Second

// Acquire takes one heavy-work slot, waiting at most wait (ErrBusy) or
// until ctx ends; release gives it back.
func (g *Guard) Acquire(ctx context.Context, wait time.Duration) (release func(), err error) {
	select {
	case g.slots <- struct{}{}:
		return g.release, nil
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return g.release, nil
	case <-t.C:
		return nil, ErrBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *Guard) release() { <-g.slots }

// InUse is how many heavy-work slots are taken now.
func (g *Guard) InUse() int { return len(g.slots) }

// Slots is how many heavy-work slots the Guard has (Options.Concurrency).
func (g *Guard) Slots() int { return cap(g.slots) }

// ErrHandshakeBusy fails a handshake whose signature found no slot.
var ErrHandshakeBusy = errors.New("handshake refused: too many handshakes in progress")

func (g *Guard) signing() (func(), error) {
	release, err := g.Acquire(context.Background(), g.handshakeWait)
	if err != nil {
		return nil, ErrHandshakeBusy
	}
	return release, nil
}

// SSHHostKey wraps an SSH host key so that every signature it makes (one
// per key exchange) runs in a heavy-work slot. The wrapper keeps the
// algorithms the key offers (rsa-sha2-256/512 for an RSA key).
func (g *Guard) SSHHostKey(k ssh.Signer) ssh.Signer {
	if k == nil {
		return nil
	}
	s := sshSigner{Signer: k, g: g}
	if m, ok := k.(ssh.MultiAlgorithmSigner); ok {
		return sshMultiSigner{sshSigner: s, algos: m}
	}
	if a, ok := k.(ssh.AlgorithmSigner); ok {
		return sshAlgoSigner{sshSigner: s, a: a}
	}
	return s
}

type sshSigner struct {
	ssh.Signer
	g *Guard
}

func (s sshSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	release, err := s.g.signing()
	if err != nil {
		return nil, err
	}
	defer release()
	return s.Signer.Sign(rand, data)
}

type sshAlgoSigner struct {
	sshSigner
	a ssh.AlgorithmSigner
}

func (s sshAlgoSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	release, err := s.g.signing()
	if err != nil {
		return nil, err
	}
	defer release()
	return s.a.SignWithAlgorithm(rand, data, algorithm)
}

type sshMultiSigner struct {
	sshSigner
	algos ssh.MultiAlgorithmSigner
}

func (s sshMultiSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	release, err := s.g.signing()
	if err != nil {
		return nil, err
	}
	defer release()
	return s.algos.SignWithAlgorithm(rand, data, algorithm)
}

func (s sshMultiSigner) Algorithms() []string { return s.algos.Algorithms() }

// TLSCertificate returns c whose private key signs (once per full TLS
// handshake: the CertificateVerify of TLS 1.3, the ServerKeyExchange of
// TLS 1.2) in a heavy-work slot: FTPS and the admin API's HTTPS.
func (g *Guard) TLSCertificate(c tls.Certificate) tls.Certificate {
	if k, ok := c.PrivateKey.(crypto.Signer); ok {
		c.PrivateKey = tlsSigner{Signer: k, g: g}
	}
	return c
}

type tlsSigner struct {
	crypto.Signer
	g *Guard
}

func (s tlsSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	release, err := s.g.signing()
	if err != nil {
		return nil, err
	}
	defer release()
	return s.Signer.Sign(rand, digest, opts)
}
