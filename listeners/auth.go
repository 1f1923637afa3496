package listeners

import (
	"errors"
	"net"
	"time"

	"github.com/udmg/gateway/authguard"
)

// DefaultPassiveIdle is how long an FTP passive listener waits for its data
// connection before its port is freed.
const DefaultPassiveIdle = 30 * time.Second

// checkPassword is every SFTP and FTP password login: it waits out the
// Guard's delay for the address and the login, verifies the password
// (from the Guard's verified passwords, or by bcrypt in one of its bounded
// slots) and records a failure. nil means logged in;
// errAuthFailed a wrong password (or no such login); anything else a
// refusal the client may retry later (throttled, node busy, stopping).
func (r *run) checkPassword(proto string, remote net.Addr, login, password string) error {
	addr := hostOf(remote)
	g := r.cfg.Guard
	if err := g.Wait(r.ctx, addr, login); err != nil {
		var te *authguard.ThrottledError
		if errors.As(err, &te) {
			r.log.Warn("login refused: too many failures", "proto", proto, "login", login, "remote", addr, "retry", te.RetryAfter)
		}
		return err
	}
	var hash []byte
	if validLogin(login) && r.cfg.PasswordHash != nil {
		hash = r.cfg.PasswordHash(login)
	}
	ok, err := g.Verify(r.ctx, hash, password)
	if err != nil {
		if errors.Is(err, authguard.ErrBusy) {
			r.log.Warn("login refused: too many logins in progress", "proto", proto, "login", login, "remote", addr)
		}
		return err
	}
	if !ok {
		f := g.Failed(addr, login)
		r.log.Info("login refused", "proto", proto, "login", login, "remote", addr,
			"failures", f.AddrFailures, "login_failures", f.AccountFailures)
		if f.NextDelay > 0 {
			r.log.Warn("slowing down logins", "proto", proto, "login", login, "remote", addr, "next_delay", f.NextDelay)
		}
		return errAuthFailed
	}
	g.Succeeded(addr, login)
	return nil
}

// accountKey names an account for the session limit: its login in this
// server's homes.
func (r *run) accountKey(login string) string {
	return r.cfg.Root + "\x00" + login
}

// reserveAccount takes one of login's sessions for s.
func (r *run) reserveAccount(s *session, login string) error {
	release, err := r.cfg.Limits.accountSession(r.accountKey(login), login)
	if err != nil {
		return err
	}
	s.setAccount(release)
	return nil
}

// admitStartup applies MaxStartups to a new connection: false means it was
// dropped (and closed) before any byte was sent.
func (r *run) admitStartup(proto string, raw net.Conn) (func(), bool) {
	release, ok := r.cfg.Limits.startup(raw.RemoteAddr())
	if !ok {
		r.log.Debug("MaxStartups: connection dropped before login", "proto", proto, "remote", raw.RemoteAddr().String())
		_ = raw.Close()
		return nil, false
	}
	return release, true
}
