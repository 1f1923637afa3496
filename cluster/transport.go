package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/udmg/gateway/fsm"
)

// Node-to-node traffic is TLS 1.3 with certificates on both sides, checked
// against the cluster CA and the cluster name. One listener (the Raft port)
// carries every kind of it, told apart by ALPN.
const (
	alpnRaft    = "udmg-raft"
	alpnProbe   = "udmg-probe"   // membership proof: the handshake is the whole exchange
	alpnForward = "udmg-forward" // a write a PASSIVE node forwards to the leader
)

// handshakeTimeout bounds a TLS handshake: a silent connection costs a
// goroutine for at most this long.
const handshakeTimeout = 3 * time.Second

// maxHandshakes bounds the handshakes in progress; excess connections are
// closed unread.
const maxHandshakes = 64

// refusalInterval is how often one reason for one remote host is logged.
const refusalInterval = 30 * time.Second

// serverTLS is the configuration of the accepting side.
func (id *Identity) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{id.Cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        id.Roots,
		NextProtos:       []string{alpnRaft, alpnProbe, alpnForward},
		VerifyConnection: id.checkPeerName,
	}
}

// clientTLS is the configuration of the dialling side, for one ALPN protocol.
func (id *Identity) clientTLS(proto string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		RootCAs:      id.Roots,
		ServerName:   id.Name,
		NextProtos:   []string{proto},
	}
}

// ForwardClientTLS is the client configuration a PASSIVE node forwards
// writes to the leader with: its node certificate, the leader checked
// against the cluster CA and name.
func (id *Identity) ForwardClientTLS() *tls.Config { return id.clientTLS(alpnForward) }

// checkPeerName requires the peer's certificate (already verified against
// the CA) to carry the cluster name, on the accepting side too.
func (id *Identity) checkPeerName(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	if err := cs.PeerCertificates[0].VerifyHostname(id.Name); err != nil {
		return fmt.Errorf("certificate not for cluster %q: %w", id.Name, err)
	}
	return nil
}

// refusals logs refused handshakes, once per remote host and reason per
// refusalInterval, so a retrying peer or a flood writes a few lines.
type refusals struct {
	log  *slog.Logger
	mu   sync.Mutex
	last map[string]time.Time
}

func (r *refusals) note(side, remote string, err error) {
	host, _, splitErr := net.SplitHostPort(remote)
	if splitErr != nil {
		host = remote
	}
	reason := refusalReason(err)
	key := side + "|" + host + "|" + reason
	r.mu.Lock()
	now := time.Now()
	if t, ok := r.last[key]; ok && now.Sub(t) < refusalInterval {
		r.mu.Unlock()
		return
	}
	if len(r.last) > 1024 {
		clear(r.last)
	}
	r.last[key] = now
	r.mu.Unlock()
	r.log.Warn("refused cluster connection", "side", side, "remote", remote, "reason", reason)
}

// refusalReason names why a handshake failed in the words an operator
// acts on.
func refusalReason(err error) string {
	var ne net.Error
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	switch {
	case errors.As(err, &unknown):
		return "certificate not signed by this cluster's CA (wrong [cluster] JoinToken or TLSCA?): " + err.Error()
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "certificate expired or not yet valid: " + err.Error()
	case errors.As(err, &host):
		return "certificate not for this cluster's name: " + err.Error()
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no TLS handshake within %s", handshakeTimeout)
	case strings.Contains(err.Error(), "remote error: tls: bad certificate"), strings.Contains(err.Error(), "remote error: tls: unknown certificate authority"):
		return "the peer refused our certificate (it has another [cluster] JoinToken or TLSCA): " + err.Error()
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		return "no client certificate"
	case strings.Contains(err.Error(), "first record does not look like a TLS handshake"):
		return "not TLS (plain connection)"
	}
	return err.Error()
}

// streamLayer is Raft's transport over mutual TLS. An accept loop hands
// each connection to its own handshake goroutine; connections that pass
// are sorted by ALPN: Raft's go to Accept, forwarded writes to the forward
// listener, probes are closed (the handshake was the proof).
type streamLayer struct {
	ln       net.Listener
	adv      net.Addr
	id       *Identity
	refusals *refusals
	server   *tls.Config

	raftCh    chan net.Conn
	forwardCh chan net.Conn
	sem       chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func newStreamLayer(bind string, adv net.Addr, id *Identity, log *slog.Logger) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	s := &streamLayer{
		ln: ln, adv: adv, id: id,
		refusals:  &refusals{log: log, last: map[string]time.Time{}},
		server:    id.serverTLS(),
		raftCh:    make(chan net.Conn),
		forwardCh: make(chan net.Conn),
		sem:       make(chan struct{}, maxHandshakes),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *streamLayer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// Out of file descriptors and the like: back off a little.
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		select {
		case s.sem <- struct{}{}:
		default:
			s.refusals.note("accept", c.RemoteAddr().String(), fmt.Errorf("more than %d handshakes in progress; connection dropped", maxHandshakes))
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.sem }()
			s.handshake(c)
		}()
	}
}

func (s *streamLayer) handshake(c net.Conn) {
	tc := tls.Server(c, s.server)
	ctx, cancel := context.WithTimeout(s.ctx, handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.refusals.note("accept", c.RemoteAddr().String(), err)
		c.Close()
		return
	}
	var ch chan net.Conn
	switch tc.ConnectionState().NegotiatedProtocol {
	case alpnRaft:
		ch = s.raftCh
	case alpnForward:
		ch = s.forwardCh
	default: // alpnProbe, or none: nothing more to say
		tc.Close()
		return
	}
	select {
	case ch <- tc:
	case <-s.ctx.Done():
		tc.Close()
	}
}

// Accept hands Raft its next authenticated connection.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.raftCh:
		return c, nil
	case <-s.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops accepting and ends handshakes in progress.
func (s *streamLayer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.cancel()
		err = s.ln.Close()
		s.wg.Wait()
	})
	return err
}

// Addr is the advertised address, which peers dial.
func (s *streamLayer) Addr() net.Addr { return s.adv }

// Dial opens an authenticated Raft connection to a peer.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.dial(string(address), alpnRaft, timeout)
}

func (s *streamLayer) dial(address, proto string, timeout time.Duration) (*tls.Conn, error) {
	timeout = min(timeout, handshakeTimeout)
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: s.id.clientTLS(proto)}
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			s.refusals.note("dial", address, err)
		}
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// forwardListener is the net.Listener of forwarded writes on the Raft port.
type forwardListener struct{ s *streamLayer }

func (l forwardListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.s.forwardCh:
		// Hidden behind a plain net.Conn: net/http would otherwise look
		// for a handler of the negotiated protocol and, finding none for
		// udmg-forward, close the connection. The handshake is done.
		return authenticatedConn{c}, nil
	case <-l.s.ctx.Done():
		return nil, net.ErrClosed
	}
}

// authenticatedConn is a TLS connection whose peer proved its cluster
// certificate, served as plain HTTP/1.1.
type authenticatedConn struct{ net.Conn }

func (l forwardListener) Close() error   { return nil } // the stream layer owns the socket
func (l forwardListener) Addr() net.Addr { return l.s.adv }

// probe proves a member's identity: a TLS handshake to its Raft address
// must show a certificate from the cluster CA naming its node ID.
func (s *streamLayer) probe(address, nodeID string) error {
	c, err := s.dial(address, alpnProbe, handshakeTimeout)
	if err != nil {
		return fmt.Errorf("TLS handshake with %s: %s", address, refusalReason(err))
	}
	defer c.Close()
	peer := c.ConnectionState().PeerCertificates[0]
	if !certNames(peer, nodeID) {
		return fmt.Errorf("certificate of %s names %q, not node %q", address, peer.Subject.CommonName, nodeID)
	}
	return nil
}

// ForwardListener yields the connections on which peers forward writes to
// this node (ALPN udmg-forward on the Raft port), each already mutually
// authenticated; the admin API serves HTTP on it. It closes with the node.
func (n *Node) ForwardListener() net.Listener { return forwardListener{n.stream} }

// DialForward opens a mutually authenticated connection to the node whose
// admin address is adminAddr (the leader, for a forwarded write), on that
// node's Raft port.
func (n *Node) DialForward(ctx context.Context, adminAddr string) (net.Conn, error) {
	var raftAddr string
	n.machine.Read(func(st *fsm.State) {
		for _, node := range st.Nodes {
			if node.AdminAddr == adminAddr {
				raftAddr = node.RaftAddr
			}
		}
	})
	if raftAddr == "" {
		return nil, fmt.Errorf("no cluster node has admin address %s", adminAddr)
	}
	timeout := handshakeTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	return n.stream.dial(raftAddr, alpnForward, timeout)
}
