// Package authguard makes password guessing expensive on every login of a
// node: the admin API's HTTP Basic logins and the SFTP and FTP listeners
// share one Guard, which slows failed logins per source address and per
// account, bounds how much CPU-heavy login work (bcrypt comparisons, key
// exchange and TLS handshake signatures) runs at once, and refuses
// passwords bcrypt would truncate.
//
// Where the counts live. Each node's Guard counts the failures it sees and
// the ones the other nodes report (RemoteFailed): Options.Share hands every
// local failure to the cluster's gossip (cluster.Node.ShareLoginFailure),
// not to Raft, so a login storm never becomes a storm of log entries beside
// the lease renewals. Counting is therefore cluster-wide: guesses spread
// over the nodes' APIs are slowed as if sent to one, and a new ACTIVE node
// slows an attack on the SFTP and FTP listeners where its predecessor left
// off. Gossip is best-effort (a report lost in a partition is counted only
// where it happened), and the Guard belongs to the process, so a restarted
// node learns only the failures reported after it came back.
package authguard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// MaxPasswordBytes is the longest password bcrypt reads; it ignores every
// byte after it, so a longer one is refused when set and never matches.
const MaxPasswordBytes = 72

// ErrBusy is returned when no comparison slot freed within the wait bound:
// the node is under a login storm and refuses rather than queue forever.
var ErrBusy = errors.New("too many logins in progress; try again")

// ValidatePassword checks a new password before it is hashed; the error
// names field (e.g. "password") and the bound.
func ValidatePassword(field, password string, minLen int) error {
	switch {
	case len(password) < minLen:
		return fmt.Errorf("%s too short: at least %d characters", field, minLen)
	case len(password) > MaxPasswordBytes:
		return fmt.Errorf("%s too long: %d bytes, at most %d (bcrypt ignores the rest)", field, len(password), MaxPasswordBytes)
	}
	return nil
}

// Hash hashes a new password, refusing one bcrypt would truncate.
func Hash(field, password string) ([]byte, error) {
	if len(password) > MaxPasswordBytes {
		return nil, ValidatePassword(field, password, 0)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return nil, fmt.Errorf("%s: hash: %w", field, err)
	}
	return h, nil
}

// dummyHash makes a login with an unknown name or no password cost what a
// real one does, so that names cannot be probed by timing.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("no such account"), bcrypt.DefaultCost)

// Matches reports whether password is the one hashed in hash. A password
// longer than MaxPasswordBytes never matches (bcrypt would compare only its
// first 72 bytes); an empty hash (no such account) never matches but costs
// the same time.
func Matches(hash []byte, password string) bool {
	if len(hash) == 0 {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return false
	}
	if len(password) > MaxPasswordBytes {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password[:MaxPasswordBytes]))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

// Guard is the login throttle and bcrypt bound of one process.
type Guard struct {
	addr    *limiter // failures per source address
	account *limiter // failures per account name, whatever the address
	slots   chan struct{}
	// known are the address and account pairs that logged in within
	// knownFor: they skip the account's delay (not the address's), so
	// that a storm on an account from elsewhere does not lock out the
	// clients that already proved they hold its password.
	knownMu sync.Mutex
	known   map[string]time.Time
	// slotWait bounds how long a login waits for a comparison slot.
	slotWait      time.Duration
	handshakeWait time.Duration
	compares      atomic.Uint64 // comparisons run (Compares)
	verified      *verifiedCache
	share         func(addr, account string)
	now           func() time.Time
}

// Options tunes a Guard; zero values take the defaults.
type Options struct {
	// Concurrency is how many pieces of CPU-heavy login work (password
	// comparisons, SSH key-exchange signatures, TLS handshake signatures:
	// see heavy.go) run at once, max(1, GOMAXPROCS-1) by default: a
	// login storm then leaves a core to the rest of the node (Raft, the
	// lease renewals), not merely a share of preempted time slices.
	Concurrency int
	// SlotWait bounds the wait for a comparison slot (10s by default);
	// past it the login is refused with ErrBusy.
	SlotWait time.Duration
	// HandshakeWait bounds a handshake signature's wait for a slot
	// (DefaultHandshakeWait); past it the handshake fails.
	HandshakeWait time.Duration
	// Share, when set, is told of every failed login this Guard records,
	// for the other nodes' Guards (RemoteFailed); it must not block.
	Share func(addr, account string)
}

// New returns a Guard with the API's historical rules for both addresses
// and accounts: from the 5th failure within a minute each attempt waits 1s,
// doubling up to 30s; a full queue of waiting attempts is refused.
func New(o Options) *Guard {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency()
	}
	if o.SlotWait <= 0 {
		o.SlotWait = 10 * time.Second
	}
	if o.HandshakeWait <= 0 {
		o.HandshakeWait = DefaultHandshakeWait
	}
	return &Guard{addr: newLimiter(), account: newLimiter(), slots: make(chan struct{}, o.Concurrency),
		slotWait: o.SlotWait, handshakeWait: o.HandshakeWait, share: o.Share, now: time.Now, known: map[string]time.Time{}, verified: newVerifiedCache()}
}

// knownFor is how long a successful login spares its address the
// account's delay; knownCapacity bounds the pairs remembered.
const (
	knownFor      = 24 * time.Hour
	knownCapacity = 10000
)

// Succeeded records a successful login of account from addr.
func (g *Guard) Succeeded(addr, account string) {
	key := addr + "\x00" + account
	now := g.now()
	g.knownMu.Lock()
	defer g.knownMu.Unlock()
	Remember(g.known, key, now, knownFor, knownCapacity)
}

// Remember notes in seen that key was seen at now, keeping seen within
// capacity: a new key first evicts the entries older than ttl and, if that
// is not enough, the oldest one. The caller holds seen's lock.
func Remember(seen map[string]time.Time, key string, now time.Time, ttl time.Duration, capacity int) {
	if _, ok := seen[key]; !ok && len(seen) >= capacity {
		oldest := ""
		for k, at := range seen {
			if now.Sub(at) >= ttl {
				delete(seen, k)
			} else if oldest == "" || at.Before(seen[oldest]) {
				oldest = k
			}
		}
		if len(seen) >= capacity {
			delete(seen, oldest)
		}
	}
	seen[key] = now
}

func (g *Guard) isKnown(addr, account string, now time.Time) bool {
	g.knownMu.Lock()
	defer g.knownMu.Unlock()
	at, ok := g.known[addr+"\x00"+account]
	return ok && now.Sub(at) < knownFor
}

// ThrottledError refuses an attempt whose address or account already has a
// full queue of waiting attempts.
type ThrottledError struct {
	Addr, Account string
	RetryAfter    time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed logins from %s or for %q; retry in %s", e.Addr, e.Account, e.RetryAfter.Round(time.Second))
}

// Admit reserves the next attempt of addr on account: how long it must wait
// (the longer of the address's and the account's delays), or a
// *ThrottledError when either queue is full.
func (g *Guard) Admit(addr, account string) (time.Duration, error) {
	now := g.now()
	wa, okA := g.addr.admit(addr, now)
	wu, okU := time.Duration(0), true
	if !g.isKnown(addr, account, now) {
		wu, okU = g.account.admit(account, now)
	}
	if !okA || !okU {
		retry := time.Duration(0)
		if !okA {
			retry = wa
		}
		if !okU {
			retry = max(retry, wu)
		}
		return 0, &ThrottledError{Addr: addr, Account: account, RetryAfter: max(retry, time.Second)}
	}
	return max(wa, wu), nil
}

// Wait is Admit followed by the wait, cut short by ctx.
func (g *Guard) Wait(ctx context.Context, addr, account string) error {
	wait, err := g.Admit(addr, account)
	if err != nil || wait <= 0 {
		return err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Failure is what Failed recorded: the failure counts of the address and of
// the account within the window, and the delay the next attempt will wait.
type Failure struct {
	AddrFailures, AccountFailures int
	NextDelay                     time.Duration
}

// Failed records a failed login of account from addr, and shares it.
func (g *Guard) Failed(addr, account string) Failure {
	f := g.RemoteFailed(addr, account)
	if g.share != nil {
		g.share(addr, account)
	}
	return f
}

// RemoteFailed records a failed login another node saw, as its own.
func (g *Guard) RemoteFailed(addr, account string) Failure {
	now := g.now()
	na, da := g.addr.fail(addr, now)
	nu, du := g.account.fail(account, now)
	return Failure{AddrFailures: na, AccountFailures: nu, NextDelay: max(da, du)}
}

// Check runs one password comparison (check) in a heavy-work slot: it
// waits at most the slot wait (ErrBusy), or until ctx ends. Logins use
// Verify, which answers a recently verified password without one.
func (g *Guard) Check(ctx context.Context, check func() bool) (bool, error) {
	release, err := g.Acquire(ctx, g.slotWait)
	if err != nil {
		return false, err
	}
	defer release()
	g.compares.Add(1)
	return check(), nil
}

// Compares counts the password comparisons run so far (each one bcrypt's
// worth of CPU): what a login storm cost, for the metrics and tests.
func (g *Guard) Compares() uint64 { return g.compares.Load() }
