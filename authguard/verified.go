package authguard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
)

// Verified passwords. A partner's scripts log in again for every file or
// every few minutes, and each login with a password would cost a bcrypt
// comparison (tens of milliseconds of a core, in a heavy-work slot): a
// 1 GiB FTP download spent more on its login than vsftpd spent in all, and
// a storm of returning clients queued behind the guesses. So, as SFTPGo's
// password caching does, a password that bcrypt accepted is remembered for
// verifiedFor: the next login with the same password against the same
// stored hash is answered without bcrypt and without a slot.
//
// What is remembered is an HMAC-SHA256, under a key drawn at start and
// never stored, of the stored hash and the password, so the process holds
// no password. Only a right password can hit: a wrong one (every guess)
// finds nothing and runs bcrypt as before, so guessing is no cheaper, and a
// fast answer tells nothing a successful login does not. A new password,
// or an account deleted or disabled (no hash then), misses: the entry is
// keyed by the hash it was checked against. Entries live in the process
// only; each node, and a restarted one, starts empty.

// verifiedFor is how long a bcrypt-accepted password is answered from
// memory; verifiedCapacity bounds the entries (the accounts of a large
// node, about 100 bytes each).
const (
	verifiedFor      = time.Hour
	verifiedCapacity = 10000
)

type verifiedCache struct {
	key  [32]byte
	mu   sync.Mutex
	seen map[string]time.Time // hash, NUL, HMAC → when bcrypt accepted it
	hits atomic.Uint64
}

func newVerifiedCache() *verifiedCache {
	c := &verifiedCache{seen: map[string]time.Time{}}
	_, _ = rand.Read(c.key[:]) // never fails (crypto/rand)
	return c
}

func (c *verifiedCache) entry(hash []byte, password string) string {
	m := hmac.New(sha256.New, c.key[:])
	m.Write(hash)
	m.Write([]byte{0})
	m.Write([]byte(password))
	return string(hash) + "\x00" + string(m.Sum(nil))
}

func (c *verifiedCache) has(entry string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.seen[entry]
	return ok && now.Sub(at) < verifiedFor
}

func (c *verifiedCache) add(entry string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	Remember(c.seen, entry, now, verifiedFor, verifiedCapacity)
}

// Verify reports whether password is the one hashed in hash (Matches): from
// the verified passwords when bcrypt accepted it within verifiedFor, else
// by a comparison in a heavy-work slot (Check, with its wait bound and
// ErrBusy). An empty hash (no such account) costs a comparison and fails.
func (g *Guard) Verify(ctx context.Context, hash []byte, password string) (bool, error) {
	var entry string
	if len(hash) > 0 && len(password) <= MaxPasswordBytes { // else Matches fails
		entry = g.verified.entry(hash, password)
		if g.verified.has(entry, g.now()) {
			g.verified.hits.Add(1)
			return true, nil
		}
	}
	ok, err := g.Check(ctx, func() bool { return Matches(hash, password) })
	if ok {
		g.verified.add(entry, g.now())
	}
	return ok, err
}

// Remembered counts the logins Verify answered without bcrypt.
func (g *Guard) Remembered() uint64 { return g.verified.hits.Load() }
