package bench_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	ts "github.com/udmg/gateway/testsupport"
)

var (
	soakFor   = flag.Duration("soak-for", 10*time.Minute, "how long the mixed soak (-only=soak) runs")
	soakState = flag.String("soak-state", "", "large: the soak runs on the issue's large state (testsupport.IssueState), seeded first")
)

// The soak's load besides the large uploads: sessions of the small-file
// uploader, clients logging in with the right and with a wrong password,
// each at most once per loginEvery, and API pollers, each once per pollEvery.
const (
	soakSessions = 8
	rightLogins  = 2
	wrongLogins  = 1
	loginEvery   = 200 * time.Millisecond
	loginTries   = 3 // a refused right login is tried again, a second apart
	apiPollers   = 2
	pollEvery    = 250 * time.Millisecond
	pingEvery    = 200 * time.Millisecond
	soakLogin    = "soak"
	soakPassword = "soak-password-1"
)

// leaseLossLines are the node's log lines of a lost lease: the mode change
// it fences with (reason "lease expired" or "lease lost"), then the lease
// loop's warning, with where the renewal's time went.
var leaseLossLines = []string{"lease lost while leading", "lease lost", "lease expired"}

// slowLine is the node's line for renewals over 100 ms, with where the
// slowest one's time went.
const slowLine = "slow lease renewal"

// soak is the issue's mixed soak: for -soak-for, at once against the
// bench's ACTIVE node, small files over soakSessions SFTP sessions, SFTP
// logins (right and wrong passwords, from two addresses of their own: the
// guesser's failures slow its own address, as the login guard means them
// to, not the right client's), API polling with a token, and the large file
// uploaded again and again. Rows give each load's figures and the lease
// renewals meanwhile; it fails if the lease was lost (log or /ping), a
// right login never got in, a wrong one did, an API poll or a large upload
// failed, or an acknowledged small file is missing.
func (b *bench) soak() []row {
	signer, err := ssh.ParsePrivateKey(mustRead(b, b.key))
	if err != nil {
		b.t.Fatal(err)
	}
	if b.large("soak-state", *soakState) {
		ts.SeedState(b.t, b.c, ts.IssueState)
	}
	b.active.Admin().Must(b.t, 201, "POST", "/api/servers/sftp/accounts", map[string]any{"login": soakLogin, "password": soakPassword})
	smallDir := filepath.Join(b.home, "soak")
	if err := os.MkdirAll(smallDir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	subnet := b.active.IP[:strings.LastIndexByte(b.active.IP, '.')+1]
	rightFrom, wrongFrom := net.ParseIP(subnet+"200"), net.ParseIP(subnet+"201")
	// The right client's first login makes its address known to the
	// guard before the guesser's failures on the account begin.
	if err := b.login(rightFrom, soakPassword); err != nil {
		b.t.Fatalf("first login of %s from %s: %v", soakLogin, rightFrom, err)
	}
	api := b.active.Admin().Tokened(b.t)

	var logins, refused, polls, big, pings tally
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	every := func(n int, d time.Duration, f func()) {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(d)
				defer tick.Stop()
				for ctx.Err() == nil {
					f()
					select {
					case <-ctx.Done():
					case <-tick.C:
					}
				}
			}()
		}
	}
	before, lostBefore, slowBefore := renewals(b.t, b.active), len(logLines(b.active, leaseLossLines...)), b.active.CountLog(slowLine)
	losses := func() []string { return logLines(b.active, leaseLossLines...)[lostBefore:] }
	// Stops the load when smallRun fails the test; a no-op after the stop
	// below. On a lost lease the sessions fail first: the node fences,
	// then logs why.
	defer func() {
		stop()
		wg.Wait()
		if b.t.Failed() {
			ts.Eventually(5*time.Second, func() bool {
				l := losses()
				return len(l) > 0 && strings.Contains(l[len(l)-1], leaseLossLines[0])
			})
			if l := losses(); len(l) > 0 {
				b.t.Logf("the node lost its lease:\n%s", strings.Join(tail(l, 10), "\n"))
			}
		}
	}()
	every(rightLogins, loginEvery, func() { b.rightLogin(&logins, rightFrom) })
	every(wrongLogins, loginEvery, func() {
		t0 := time.Now()
		if err := b.login(wrongFrom, soakPassword+"-wrong"); err != nil {
			refused.add("refused", time.Since(t0))
		} else {
			refused.fail("let in", fmt.Errorf("a wrong password logged %s in", soakLogin))
		}
	})
	every(apiPollers, pollEvery, func() {
		for _, path := range []string{"/api/transfers", "/api/cluster"} {
			t0 := time.Now()
			r, err := api.Do("GET", path, nil)
			if err == nil && r.Status != 200 {
				err = fmt.Errorf("GET %s: %s", path, r)
			}
			polls.done(time.Since(t0), err)
		}
	})
	every(1, time.Millisecond, func() { b.bigUpload(&big) })
	every(1, pingEvery, func() {
		switch code, mode := b.active.Ping(); {
		case code == 0:
			pings.add("unanswered", 0)
		case mode != "ACTIVE":
			pings.fail("not ACTIVE", fmt.Errorf("/ping answered %d %q", code, mode))
		default:
			pings.add("ACTIVE", 0)
		}
	})
	small := b.smallRun(b.active.SFTPAddr(), login, signer, "soak", smallDir, soakSessions, *soakFor, false)
	stop()
	wg.Wait()
	after := renewals(b.t, b.active)
	lost, slow := len(losses()), b.active.CountLog(slowLine)-slowBefore
	if err := os.RemoveAll(smallDir); err != nil {
		b.t.Fatal(err)
	}

	if lost > 0 || pings.n["not ACTIVE"] > 0 {
		b.t.Errorf("the ACTIVE lost its lease during the soak: %d log lines, %d /ping answers not ACTIVE (%v)",
			lost, pings.n["not ACTIVE"], pings.first["not ACTIVE"])
	}
	if slow > 0 {
		b.t.Logf("where the slow renewals' time went (the node's last lines):\n%s", strings.Join(tail(logLines(b.active, slowLine), 3), "\n"))
	}
	if logins.n["never in"] > 0 {
		b.t.Errorf("%d right logins never got in (%d tries each): first %v", logins.n["never in"], loginTries, logins.first["never in"])
	}
	for _, bad := range []struct {
		t       *tally
		outcome string
	}{{&refused, "let in"}, {&polls, "failed"}, {&big, "failed"}} {
		if err := bad.t.first[bad.outcome]; err != nil {
			b.t.Errorf("soak: %v", err)
		}
	}
	if logins.n["ok"] == 0 || polls.n["ok"] == 0 || big.n["ok"] == 0 {
		b.t.Errorf("a load did not run: %d logins, %d polls, %d large uploads", logins.n["ok"], polls.n["ok"], big.n["ok"])
	}

	name := func(what string) string { return fmt.Sprintf("soak %s: %s", soakFor, what) }
	secs := soakFor.Seconds()
	return []row{
		small.row(name(fmt.Sprintf("small files %dx4KiB", soakSessions))),
		{name: name(fmt.Sprintf("SFTP logins, %d right + %d wrong clients", rightLogins, wrongLogins)),
			value: fmt.Sprintf("%d in", logins.n["ok"]), rate: fmt.Sprintf("%.1f logins/s", float64(logins.n["ok"])/secs),
			note: fmt.Sprintf("right: %d never in, %d in after a retry, p50 %s, p99 %s; wrong: %d refused, %d let in",
				logins.n["never in"], logins.n["retried"], logins.quantile(0.5), logins.quantile(0.99), refused.n["refused"], refused.n["let in"])},
		{name: name("API polls /api/transfers, /api/cluster"),
			value: fmt.Sprintf("%d requests", polls.total()), rate: fmt.Sprintf("%.1f req/s", float64(polls.total())/secs),
			note: fmt.Sprintf("%d failed; p50 %s, p99 %s, max %s", polls.total()-polls.n["ok"], polls.quantile(0.5), polls.quantile(0.99), polls.quantile(1))},
		{name: name(fmt.Sprintf("%s SFTP uploads in a row", mib(*bigSize))),
			value: fmt.Sprintf("%d uploads", big.n["ok"]), rate: mbps(*bigSize, big.quantileDuration(0.5)),
			note: fmt.Sprintf("%d failed; each checksum equal; median %s", big.total()-big.n["ok"], big.quantile(0.5))},
		{name: name("udmg_lease_renewal_seconds"),
			value: "p99 <= " + after.quantile(before, 0.99),
			note: fmt.Sprintf("goal p99 <= 100ms; %.0f renewals, p50 <= %s, max <= %s, %d over 100ms, %d over 500ms; %d \"slow lease renewal\" lines",
				after.count-before.count, after.quantile(before, 0.5), after.quantile(before, 1), after.over(before, 0.1), after.over(before, 0.5), slow)},
		{name: name("lease losses"), value: fmt.Sprint(lost + pings.n["not ACTIVE"]),
			note: fmt.Sprintf("goal 0; %d lease lost/expired log lines; /ping: %d ACTIVE, %d not, %d unanswered",
				lost, pings.n["ACTIVE"], pings.n["not ACTIVE"], pings.n["unanswered"])},
	}
}

// login logs in as soakLogin with password over a new SFTP connection from
// the local address from, runs one request and disconnects.
func (b *bench) login(from net.IP, password string) error {
	addr := b.active.SFTPAddr()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 10 * time.Second}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer raw.Close()
	// The guard may hold a guesser's attempt for up to 30 s.
	raw.SetDeadline(time.Now().Add(time.Minute))
	sc, chans, reqs, err := ssh.NewClientConn(raw, addr, &ssh.ClientConfig{User: soakLogin,
		Auth: []ssh.AuthMethod{ssh.Password(password)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		return fmt.Errorf("ssh %s@%s from %s: %w", soakLogin, addr, from, err)
	}
	c := ssh.NewClient(sc, chans, reqs)
	defer c.Close()
	s, err := sftp.NewClient(c)
	if err != nil {
		return fmt.Errorf("sftp %s@%s: %w", soakLogin, addr, err)
	}
	defer s.Close()
	_, err = s.Getwd()
	return err
}

// rightLogin logs in with the right password, trying again a second later
// when refused, as clients do, up to loginTries times.
func (b *bench) rightLogin(logins *tally, from net.IP) {
	t0 := time.Now()
	var err error
	for try := range loginTries {
		if try > 0 {
			time.Sleep(time.Second)
		}
		if err = b.login(from, soakPassword); err == nil {
			if try > 0 {
				logins.add("retried", 0)
			}
			logins.add("ok", time.Since(t0))
			return
		}
	}
	logins.fail("never in", err)
}

// bigUpload uploads the large file with OpenSSH's sftp and checks it.
func (b *bench) bigUpload(big *tally) {
	t0 := time.Now()
	out, err := ts.SFTPCommand(b.active.SFTPAddr(), login, b.key, fmt.Sprintf("put %s soak-big.bin\n", b.src)).CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		err = fmt.Errorf("sftp put of the large file: %v\n%s", err, out)
	} else {
		dst := filepath.Join(b.home, "soak-big.bin")
		var sum string
		if sum, err = ts.SHA256File(dst); err == nil && sum != b.sum {
			err = fmt.Errorf("%s differs from the source", dst)
		}
		os.Remove(dst)
	}
	big.done(d, err)
}

// logLines are p's log lines that contain any of subs.
func logLines(p *ts.Proc, subs ...string) []string {
	var out []string
	for _, l := range strings.Split(p.Log(), "\n") {
		if slices.ContainsFunc(subs, func(s string) bool { return strings.Contains(l, s) }) {
			out = append(out, l)
		}
	}
	return out
}

func tail(lines []string, n int) []string { return lines[max(0, len(lines)-n):] }

// tally is what one of the soak's loads saw: attempts by outcome, the
// first error of each, and how long the outcomes given a time took.
type tally struct {
	mu    sync.Mutex
	n     map[string]int
	first map[string]error
	times []time.Duration
}

// add counts one attempt under outcome, keeping its time d unless 0.
func (t *tally) add(outcome string, d time.Duration) {
	t.count(outcome, d, nil)
}

// fail counts one attempt under outcome, keeping the first error of each.
func (t *tally) fail(outcome string, err error) {
	t.count(outcome, 0, err)
}

// done counts an attempt that took d as "ok", or as "failed" with err.
func (t *tally) done(d time.Duration, err error) {
	if err != nil {
		t.fail("failed", err)
	} else {
		t.add("ok", d)
	}
}

func (t *tally) count(outcome string, d time.Duration, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n, t.first = map[string]int{}, map[string]error{}
	}
	if err != nil && t.first[outcome] == nil {
		t.first[outcome] = err
	}
	if d > 0 {
		t.times = append(t.times, d)
	}
	t.n[outcome]++
}

func (t *tally) total() int {
	n := 0
	for _, c := range t.n {
		n += c
	}
	return n
}

// quantileDuration is the q quantile of the kept times (0 when none).
func (t *tally) quantileDuration(q float64) time.Duration {
	if len(t.times) == 0 {
		return 0
	}
	s := slices.Clone(t.times)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)]
}

func (t *tally) quantile(q float64) string {
	return t.quantileDuration(q).Round(time.Millisecond).String()
}
