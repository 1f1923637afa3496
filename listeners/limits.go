package listeners

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/udmg/gateway/authguard"
)

// MaxStartups bounds the connections that have not logged in yet, as
// OpenSSH's sshd_config MaxStartups start:rate:full does: from Start
// unauthenticated connections on, a new one is dropped with probability
// Rate percent, rising linearly to 100% at Full. PerSource bounds them per
// client address (OpenSSH's PerSourceMaxStartups), so that one address
// cannot fill the table and lock everyone else out. A dropped connection is
// closed at once, before the SSH version exchange or the FTP greeting.
//
// An address that logged in successfully within the last 10 minutes is
// spared the random drop and the Full cap, and may hold up to Full
// unauthenticated connections rather than PerSource (a load balancer's
// address carries many clients): a storm from many addresses then fills
// the table for strangers but not for the clients the gateway already
// knows, and nobody becomes known without a valid login.
type MaxStartups struct {
	Start, Rate, Full int
	PerSource         int
}

// DefaultMaxStartups is OpenSSH's default (10:30:100) with at most 5
// unauthenticated connections per address.
var DefaultMaxStartups = MaxStartups{Start: 10, Rate: 30, Full: 100, PerSource: 5}

// trustFor is how long a successful login spares its address the
// MaxStartups drop; trustCapacity bounds the addresses remembered.
const (
	trustFor      = 10 * time.Minute
	trustCapacity = 10000
)

// DefaultAccountSessions is how many sessions one account may hold at once
// (SFTP and FTP of one server together).
const DefaultAccountSessions = 16

// DefaultLoginGrace is how long a connection may take to log in (OpenSSH's
// LoginGraceTime, shorter): the SSH handshake and authentication, or the
// FTP greeting up to a successful PASS.
const DefaultLoginGrace = 30 * time.Second

// dropProbability is the chance that a new connection is dropped when n
// connections are waiting to log in.
func (m MaxStartups) dropProbability(n int) float64 {
	switch {
	case m.Full <= 0 || n >= m.Full:
		return 1
	case n < m.Start:
		return 0
	case m.Full <= m.Start:
		return 1
	}
	p := float64(m.Rate)/100 + (1-float64(m.Rate)/100)*float64(n-m.Start)/float64(m.Full-m.Start)
	return min(p, 1)
}

// Limits holds the connection and session counts that every server of a
// node shares: unauthenticated connections (MaxStartups) and sessions per
// account.
type Limits struct {
	startups        MaxStartups
	accountSessions int
	roll            func() float64 // uniform in [0,1): the MaxStartups dice

	mu       sync.Mutex
	pending  int            // connections not logged in yet
	bySource map[string]int // the same, by client address
	accounts map[string]int // sessions by account key
	trusted  map[string]time.Time
	dropped  uint64
	now      func() time.Time
}

// NewLimits returns the limits of one node; zero values take the defaults
// (DefaultMaxStartups, DefaultAccountSessions).
func NewLimits(startups MaxStartups, accountSessions int) *Limits {
	if startups == (MaxStartups{}) {
		startups = DefaultMaxStartups
	}
	if accountSessions <= 0 {
		accountSessions = DefaultAccountSessions
	}
	return &Limits{startups: startups, accountSessions: accountSessions, roll: rand.Float64,
		bySource: map[string]int{}, accounts: map[string]int{}, trusted: map[string]time.Time{}, now: time.Now}
}

// startup admits a new unauthenticated connection from remote; the release
// func (idempotent) ends its unauthenticated time: logged in or gone.
func (l *Limits) startup(remote net.Addr) (release func(), ok bool) {
	src := hostOf(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	known := l.now().Sub(l.trusted[src]) < trustFor
	perSource := l.startups.PerSource
	if known {
		// A load balancer's address is known once one client logged in
		// through it: its many clients then share one address.
		perSource = max(perSource, l.startups.Full)
	}
	if (perSource > 0 && l.bySource[src] >= perSource) ||
		(!known && l.roll() < l.startups.dropProbability(l.pending)) {
		l.dropped++
		return nil, false
	}
	l.pending++
	l.bySource[src]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.pending--
			if l.bySource[src]--; l.bySource[src] <= 0 {
				delete(l.bySource, src)
			}
		})
	}, true
}

// accountFull reports (as the error the client reads) that account holds
// every session it may.
func (l *Limits) accountFull(account, login string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.accounts[account]; n >= l.accountSessions {
		return fmt.Errorf("too many sessions for account %s: %d open, at most %d", login, n, l.accountSessions)
	}
	return nil
}

// trust records a successful login from remote (see MaxStartups).
func (l *Limits) trust(remote net.Addr) {
	src := hostOf(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	authguard.Remember(l.trusted, src, l.now(), trustFor, trustCapacity)
}

// Dropped counts the connections dropped by MaxStartups so far.
func (l *Limits) Dropped() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

// Pending is how many connections are waiting to log in now.
func (l *Limits) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending
}

// accountSession reserves one of account's sessions; the error says why
// not, for the client to read.
func (l *Limits) accountSession(account, login string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.accounts[account] >= l.accountSessions {
		return nil, fmt.Errorf("too many sessions for account %s: %d open, at most %d", login, l.accounts[account], l.accountSessions)
	}
	l.accounts[account]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.accounts[account]--; l.accounts[account] <= 0 {
				delete(l.accounts, account)
			}
		})
	}, nil
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// sessionLimits are a session's reservations in Limits, released when it
// logs in (startup) or ends (all). The run keeps them by session.
type sessionLimits struct {
	mu      sync.Mutex
	startup func()
	account func()
	grace   *time.Timer // kills the session if it has not logged in in time
}

// reservation is s's sessionLimits, made on first use.
func (r *run) reservation(s *session) *sessionLimits {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.reservations[s]
	if l == nil {
		l = &sessionLimits{}
		r.reservations[s] = l
	}
	return l
}

func (s *session) setStartup(release func()) {
	l := s.r.reservation(s)
	l.mu.Lock()
	l.startup = release
	l.mu.Unlock()
}

// loggedIn ends the session's unauthenticated time.
func (s *session) loggedIn() {
	l := s.r.reservation(s)
	l.mu.Lock()
	release, grace := l.startup, l.grace
	l.startup, l.grace = nil, nil
	l.mu.Unlock()
	if grace != nil {
		grace.Stop()
	}
	if release != nil {
		release()
	}
}

func (s *session) setAccount(release func()) {
	l := s.r.reservation(s)
	l.mu.Lock()
	l.account = release
	l.mu.Unlock()
}

// releaseLimits gives back every reservation of the session; the run
// forgets them.
func (s *session) releaseLimits() {
	s.loggedIn()
	l := s.r.reservation(s)
	l.mu.Lock()
	release := l.account
	l.account = nil
	l.mu.Unlock()
	if release != nil {
		release()
	}
	s.r.mu.Lock()
	delete(s.r.reservations, s)
	s.r.mu.Unlock()
}

// startGrace kills the session if it has not logged in within d.
func (s *session) startGrace(d time.Duration) {
	l := s.r.reservation(s)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.startup == nil {
		return
	}
	l.grace = time.AfterFunc(d, func() {
		l.mu.Lock()
		pending := l.grace != nil
		l.mu.Unlock()
		if pending {
			s.log.Info("no login within the grace time: closing connection", "grace", d)
			s.kill()
		}
	})
}
