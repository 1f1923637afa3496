package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net"
	"sync"
	"time"

	"github.com/udmg/gateway/fsm"
)

// Partner sessions are kept open between the transfers of one engine: a
// chain's TRANSFER children, a burst of API transfers, the fetches of a
// poll reuse the connection (and on an OpenSSH partner its sshd and
// sftp-server processes) instead of a new handshake each, which cost a
// second per file under load. A session is reused only by the same
// partner and remote account as they are now (any change to either, its
// host key or credentials, dials anew), after one round trip shows it is
// still open; it is dropped after any error or cut, and closed once idle
// for idleSession or when the engine stops. Only SFTP sessions are kept
// (reusable): an FTP session dials its data connections with the context
// of the transfer that opened it.

// reusable is a partner session that may serve another transfer.
type reusable interface {
	// alive is one round trip to the partner: an idle session is
	// reused only if it answers.
	alive() error
}

// idleSession is how long an unused partner session stays open.
const idleSession = 30 * time.Second

// sessionPool holds the idle sessions of an engine, by sessionKey; at most
// Concurrency per key (more never run at once).
type sessionPool struct {
	max    int
	mu     sync.Mutex
	idle   map[[32]byte][]idleSess
	closed bool
}

type idleSess struct {
	s     partnerSession
	since time.Time
}

// sessionKey names what a session was opened with: the partner, the
// account (its sealed credentials) and the source address, hashed so that
// the pool keeps nothing of them.
func sessionKey(p fsm.Partner, acc fsm.RemoteAccount, local net.Addr) [32]byte {
	var src string
	if local != nil {
		src = local.String()
	}
	b, _ := json.Marshal(struct {
		P   fsm.Partner
		A   fsm.RemoteAccount
		Src string
	}{p, acc, src})
	return sha256.Sum256(b)
}

// take returns an idle session of key that still answers, or nil.
func (sp *sessionPool) take(key [32]byte) partnerSession {
	for {
		sp.mu.Lock()
		list := sp.idle[key]
		if len(list) == 0 {
			sp.mu.Unlock()
			return nil
		}
		// The most recently used first: the older ones idle out.
		s := list[len(list)-1]
		sp.idle[key] = list[:len(list)-1]
		sp.mu.Unlock()
		if time.Since(s.since) < idleSession && s.s.(reusable).alive() == nil {
			return s.s
		}
		s.s.close()
	}
}

// put keeps s for the next transfer of key, or closes it.
func (sp *sessionPool) put(key [32]byte, s partnerSession) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed || len(sp.idle[key]) >= sp.max {
		s.close()
		return
	}
	if sp.idle == nil {
		sp.idle = map[[32]byte][]idleSess{}
	}
	sp.idle[key] = append(sp.idle[key], idleSess{s: s, since: time.Now()})
}

// reap closes the sessions idle for idleSession.
func (sp *sessionPool) reap(now time.Time) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for key, list := range sp.idle {
		keep := list[:0]
		for _, s := range list {
			if now.Sub(s.since) < idleSession {
				keep = append(keep, s)
			} else {
				s.s.close()
			}
		}
		if len(keep) == 0 {
			delete(sp.idle, key)
		} else {
			sp.idle[key] = keep
		}
	}
}

// closeAll closes every idle session and every one put back later.
func (sp *sessionPool) closeAll() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.closed = true
	for _, list := range sp.idle {
		for _, s := range list {
			s.s.close()
		}
	}
	sp.idle = nil
}

// session opens a session to partner p as acc for one transfer or look,
// reused from the pool when one is idle. Cancelling ctx closes it (that is
// what interrupts a transfer under way). release(healthy) hands it back to
// the pool, or closes it unless healthy and not cut.
func (e *Engine) session(ctx context.Context, p fsm.Partner, acc fsm.RemoteAccount) (sess partnerSession, release func(healthy bool), err error) {
	key := sessionKey(p, acc, e.localAddr())
	if sess = e.sessions.take(key); sess == nil {
		if sess, err = e.dial(ctx, p, acc); err != nil {
			return nil, nil, err
		}
	}
	stop := context.AfterFunc(ctx, func() { sess.close() })
	_, keep := sess.(reusable)
	return sess, func(healthy bool) {
		if !stop() || !healthy || !keep || ctx.Err() != nil {
			sess.close()
			return
		}
		e.sessions.put(key, sess)
	}, nil
}
