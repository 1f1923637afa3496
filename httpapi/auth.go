package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/udmg/gateway/authguard"
)

// The permission domains, as written in a user's "perms".
const (
	DomainAdministration = "administration"
	DomainServers        = "servers"
	DomainPartners       = "partners"
	DomainRules          = "rules"
	DomainUsers          = "users"
	DomainTransfers      = "transfers"
)

// Domains lists every permission domain in display order.
var Domains = []string{DomainAdministration, DomainServers, DomainPartners, DomainRules, DomainUsers, DomainTransfers}

// perm is one right within a domain. A mode string holds them like file
// modes: "r" read, "w" write (create, change and delete), "d" delete only,
// "-" for a right not held; "rw-" reads and writes.
type perm int

const (
	permNone perm = iota
	permRead
	permWrite
	permDelete
)

func (p perm) String() string {
	return [...]string{"", "read", "write", "delete"}[p]
}

// hasPerm reports whether mode grants p; write includes delete, so that
// "rw-" (the initial administrator's mode) may delete too.
func hasPerm(mode string, p perm) bool {
	if len(mode) != 3 {
		return false
	}
	switch p {
	case permRead:
		return mode[0] == 'r'
	case permWrite:
		return mode[1] == 'w'
	case permDelete:
		return mode[1] == 'w' || mode[2] == 'd'
	}
	return true
}

// principal is the authenticated caller of a request.
type principal struct {
	user  string
	perms map[string]string
	// token is the SHA-256 (hex) of the bearer token presented; empty for
	// HTTP Basic.
	token string
}

func (p *principal) can(domain string, need perm) bool {
	return need == permNone || hasPerm(p.perms[domain], need)
}

// rule is the permission an endpoint needs.
type rule struct {
	domain string
	need   perm
	// self lets users reach their own /api/users/{username} without the
	// permission; the handler limits what they may do there.
	self bool
}

func (rl rule) check(p *principal, r *http.Request) error {
	if p.can(rl.domain, rl.need) || (rl.self && r.PathValue("username") == p.user) {
		return nil
	}
	return fmt.Errorf("permission denied: %s needs %s %s", p.user, rl.domain, rl.need)
}

// tokenHash is how a bearer token is kept and looked up: only its SHA-256.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// authenticate identifies the caller from HTTP Basic credentials or a
// bearer token; when it cannot, it has answered the request and returns false.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (*principal, bool) {
	h := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	switch {
	case h == "":
		unauthorized(w, r, "Basic", "authentication required: HTTP Basic credentials or a bearer token")
		return nil, false
	case strings.EqualFold(scheme, "Basic"):
		return a.basic(w, r)
	case strings.EqualFold(scheme, "Bearer"):
		return a.bearer(w, r, strings.TrimSpace(cred))
	default:
		unauthorized(w, r, "Basic", fmt.Sprintf("unsupported authorization scheme %q (use Basic or Bearer)", scheme))
		return nil, false
	}
}

func (a *API) basic(w http.ResponseWriter, r *http.Request) (*principal, bool) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		unauthorized(w, r, "Basic", "malformed Basic credentials")
		return nil, false
	}
	ip := clientIP(r)
	if err := a.logins.Wait(r.Context(), ip, user); err != nil {
		var te *authguard.ThrottledError
		if errors.As(err, &te) {
			secs := int(te.RetryAfter.Round(time.Second) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many failed logins from %s or for %s; retry in %s", ip, user, te.RetryAfter.Round(time.Second)))
		}
		return nil, false // else the client left; nobody reads an answer
	}
	ok, err := a.logins.Verify(r.Context(), a.node.PasswordHash(user), pass)
	if err != nil {
		if errors.Is(err, authguard.ErrBusy) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "too many logins in progress on this node; retry")
		}
		return nil, false
	}
	if !ok {
		f := a.logins.Failed(ip, user)
		a.log.Warn("authentication failed", "remote", ip, "user", user, "failures", f.AddrFailures, "user_failures", f.AccountFailures, "path", r.URL.Path)
		if f.NextDelay > 0 {
			a.log.Warn("slowing down logins from this address", "remote", ip, "user", user, "failures", f.AddrFailures, "user_failures", f.AccountFailures, "next_delay", f.NextDelay)
		}
		unauthorized(w, r, "Basic", "invalid user name or password")
		return nil, false
	}
	a.logins.Succeeded(ip, user)
	u, ok := lookup(a.node, ofUsers, user)
	if !ok { // deleted between the two reads
		unauthorized(w, r, "Basic", "invalid user name or password")
		return nil, false
	}
	return &principal{user: user, perms: u.Perms}, true
}

func (a *API) bearer(w http.ResponseWriter, r *http.Request, token string) (*principal, bool) {
	if token == "" {
		unauthorized(w, r, "Bearer", "empty bearer token")
		return nil, false
	}
	hash := tokenHash(token)
	t, ok := lookup(a.node, ofTokens, hash)
	if !ok {
		a.log.Warn("unknown bearer token", "remote", clientIP(r), "path", r.URL.Path)
		unauthorized(w, r, "Bearer", "invalid or revoked token")
		return nil, false
	}
	if !a.now().Before(t.Expires) {
		unauthorized(w, r, "Bearer", "token expired on "+t.Expires.UTC().Format(time.RFC3339)+"; create a new one")
		return nil, false
	}
	u, ok := lookup(a.node, ofUsers, t.User)
	if !ok {
		unauthorized(w, r, "Bearer", "invalid or revoked token")
		return nil, false
	}
	return &principal{user: t.User, perms: u.Perms, token: hash}, true
}

// unauthorized answers 401. Scripts and browsers get the challenge that
// tells them how to authenticate, but not the page's own calls (marked with
// X-Requested-With, as the admin page sends them): a browser would open its
// own password dialog over the page's login form.
func unauthorized(w http.ResponseWriter, r *http.Request, scheme, msg string) {
	switch {
	case r.Header.Get("X-Requested-With") != "":
	case scheme == "Bearer":
		w.Header().Set("WWW-Authenticate", `Bearer realm="udmg", error="invalid_token"`)
	default:
		w.Header().Set("WWW-Authenticate", `Basic realm="udmg"`)
	}
	writeError(w, http.StatusUnauthorized, msg)
}

// clientIP is the address the connection comes from. X-Forwarded-For is not
// trusted: anyone can write it.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
