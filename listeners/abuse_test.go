package listeners

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/authguard"
)

// bcryptAuth makes the harness check alice's password against a real
// bcrypt hash, as the Manager does.
func bcryptAuth(t *testing.T, pass string) func(*Config) {
	hash, err := authguard.Hash("password", pass)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *Config) {
		c.PasswordHash = func(login string) []byte {
			if login != user {
				return nil
			}
			return hash
		}
	}
}

// dialer returns a net.Dialer whose connections leave from src (another
// loopback address: another client as far as the server can tell).
func dialer(src string) *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
}

func sftpLogin(h *harness, src, login, pass string) (*ssh.Client, string, error) {
	var banner string
	var mu sync.Mutex
	conf := &ssh.ClientConfig{
		User:            login,
		Auth:            []ssh.AuthMethod{ssh.Password(pass)},
		HostKeyCallback: ssh.FixedHostKey(h.signer.PublicKey()),
		BannerCallback: func(msg string) error {
			mu.Lock()
			banner += msg
			mu.Unlock()
			return nil
		},
	}
	raw, err := dialer(src).Dial("tcp", h.sftpAddr())
	if err != nil {
		return nil, "", err
	}
	c, chans, reqs, err := ssh.NewClientConn(raw, h.sftpAddr(), conf)
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		raw.Close()
		return nil, banner, err
	}
	return ssh.NewClient(c, chans, reqs), banner, nil
}

func ftpLogin(h *harness, src, login, pass string) (*ftp.ServerConn, error) {
	c, err := ftp.Dial(h.ftpAddr(), ftp.DialWithDialer(*dialer(src)), ftp.DialWithTimeout(time.Minute))
	if err != nil {
		return nil, err
	}
	if err := c.Login(login, pass); err != nil {
		c.Quit()
		return nil, err
	}
	return c, nil
}

func loginAs(h *harness, proto, src, login, pass string) error {
	if proto == "sftp" {
		c, _, err := sftpLogin(h, src, login, pass)
		if err == nil {
			c.Close()
		}
		return err
	}
	c, err := ftpLogin(h, src, login, pass)
	if err == nil {
		c.Quit()
	}
	return err
}

// TestBruteForceIsSlowed: a loop of wrong passwords against SFTP and FTP
// gets its first four guesses at full speed, then waits 1s, 2s, 4s… per
// guess, as against the API; the right password from the same address then
// waits too, and so does another address guessing at the same account.
// (The harness compares passwords in clear, so that the figures show the
// throttle rather than bcrypt under the race detector.)
func TestBruteForceIsSlowed(t *testing.T) {
	const window = 6 * time.Second
	for _, proto := range []string{"sftp", "ftp"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			start := time.Now()
			var at []time.Duration
			for time.Since(start) < window {
				if err := loginAs(h, proto, "127.0.0.1", user, fmt.Sprintf("guess-%d", len(at))); err == nil {
					t.Fatal("a wrong password logged in")
				}
				at = append(at, time.Since(start))
			}
			if len(at) < 5 {
				t.Fatalf("only %d guesses in %s: the first ones were slowed too", len(at), window)
			}
			free := at[4] // five failures at full speed, then every guess waits
			last := at[len(at)-1]
			t.Logf("%s brute force: first 5 guesses at %.1f/s, then %d in %s (%.2f/s)",
				proto, 5/free.Seconds(), len(at)-5, (last - free).Round(time.Millisecond), float64(len(at)-5)/(last-free).Seconds())
			// Waits of 1s, 2s, 4s: at most 3 more guesses in the window.
			if len(at) > 5+3 {
				t.Fatalf("%d guesses in %s: not slowed (%v)", len(at), window, at)
			}
			t0 := time.Now()
			if err := loginAs(h, proto, "127.0.0.1", user, password); err != nil {
				t.Fatalf("the right password after the storm: %v", err)
			}
			if d := time.Since(t0); d < time.Second {
				t.Fatalf("the right password from the guessing address answered in %s, want a wait", d)
			}
			// Per account: another address guessing at alice waits too,
			// while that address is free on another account.
			t0 = time.Now()
			_ = loginAs(h, proto, "127.0.0.9", user, "another-guess")
			if d := time.Since(t0); d < time.Second {
				t.Fatalf("a fresh address guessing at the same account answered in %s, want a wait", d)
			}
			t0 = time.Now()
			if err := loginAs(h, proto, "127.0.0.9", "bob", "hunter2"); err != nil {
				t.Fatalf("bob from the fresh address: %v", err)
			}
			if d := time.Since(t0); d >= time.Second {
				t.Fatalf("another account from a fresh address waited %s", d)
			}
		})
	}
}

// TestPasswordOver72Bytes: against the real bcrypt hash of a 72-byte
// password, the password logs in and the same followed by anything does
// not (bcrypt alone would let it in), over SFTP and FTP.
func TestPasswordOver72Bytes(t *testing.T) {
	pw72 := strings.Repeat("k", authguard.MaxPasswordBytes)
	h := newHarness(t, bcryptAuth(t, pw72))
	for _, proto := range []string{"sftp", "ftp"} {
		if err := loginAs(h, proto, "127.0.0.1", user, pw72+"x"); err == nil {
			t.Fatalf("%s: 72 bytes + x logged in", proto)
		}
		if err := loginAs(h, proto, "127.0.0.1", user, pw72); err != nil {
			t.Fatalf("%s: the 72-byte password: %v", proto, err)
		}
	}
}

// TestMaxStartups: connections that have not logged in are bounded per
// address and in all, and the excess is closed before the server says a
// word; a client from elsewhere still logs in, idle pre-auth connections
// are closed after LoginGrace, and an address that logged in before is
// not dropped when many addresses fill the table.
func TestMaxStartups(t *testing.T) {
	limits := NewLimits(DefaultMaxStartups, 0)
	h := newHarness(t, func(c *Config) {
		c.Limits = limits
		c.LoginGrace = 3 * time.Second
	})
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	// greeted reports whether the server greeted c (SSH banner or FTP
	// 220) rather than closing it unspoken.
	greeted := func(c net.Conn, want string) bool {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("reading the greeting: %v", err)
		}
		return strings.HasPrefix(line, want)
	}
	flood := func(src, addr, want string, n int) (held []net.Conn, dropped int) {
		for range n {
			c, err := dialer(src).Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			if greeted(c, want) {
				held = append(held, c)
			} else {
				dropped++
			}
		}
		return held, dropped
	}

	held, dropped := flood("127.0.0.1", h.sftpAddr(), "SSH-2.0-", 40)
	if len(held) != DefaultMaxStartups.PerSource || dropped != 40-DefaultMaxStartups.PerSource {
		t.Fatalf("40 SSH connections from one address: %d greeted, %d dropped; want %d greeted", len(held), dropped, DefaultMaxStartups.PerSource)
	}
	if _, d := flood("127.0.0.1", h.ftpAddr(), "220", 5); d != 5 {
		t.Fatalf("FTP from the same address: %d of 5 dropped, want all (the limit is shared)", d)
	}
	t.Logf("one address: 40 SSH + 5 FTP connections, %d held, %d dropped before the banner", len(held), dropped+5)

	// Legitimate clients from elsewhere are served meanwhile.
	sc, _, err := sftpLogin(h, "127.0.0.2", user, password)
	if err != nil {
		t.Fatalf("SFTP login from another address during the flood: %v", err)
	}
	sc.Close()
	fc, err := ftpLogin(h, "127.0.0.3", user, password)
	if err != nil {
		t.Fatalf("FTP login from another address during the flood: %v", err)
	}
	if _, err := fc.List("/"); err != nil {
		t.Fatalf("FTP LIST: %v", err)
	}
	fc.Quit()

	// The held ones are closed after LoginGrace.
	for _, c := range held {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("a connection that never logged in is still open 10s after its 3s grace")
		}
	}
	eventually(t, 10*time.Second, "no connection waiting to log in", func() bool { return limits.Pending() == 0 })

	// Many addresses: never more than Full wait, the rest are dropped at
	// a rising rate from Start on.
	total, greetedN := 0, 0
	for i := range 30 {
		held, _ := flood(fmt.Sprintf("127.0.1.%d", i+1), h.sftpAddr(), "SSH-2.0-", 5)
		total += 5
		greetedN += len(held)
	}
	if p := limits.Pending(); p > DefaultMaxStartups.Full || greetedN > DefaultMaxStartups.Full {
		t.Fatalf("%d waiting to log in (%d greeted), more than Full=%d", p, greetedN, DefaultMaxStartups.Full)
	}
	if greetedN < DefaultMaxStartups.Start || total-greetedN < 30 {
		t.Fatalf("30 addresses x 5: %d greeted of %d; want at least Start=%d greeted and a good part dropped", greetedN, total, DefaultMaxStartups.Start)
	}
	t.Logf("30 addresses x 5 connections: %d greeted, %d dropped before the banner", greetedN, total-greetedN)

	// With the table that full, an address that logged in before is not
	// dropped at random: the SFTP client from 127.0.0.2 logs in at once.
	pending := limits.Pending()
	for i := range 5 {
		sc, _, err := sftpLogin(h, "127.0.0.2", user, password)
		if err != nil {
			t.Fatalf("known address, login %d with %d waiting to log in: %v", i+1, pending, err)
		}
		sc.Close()
	}
	t.Logf("known address: 5 of 5 logins with %d connections waiting to log in", pending)
	// A known address (a load balancer's, say) may hold more than
	// PerSource unauthenticated connections.
	lb, _ := flood("127.0.0.2", h.sftpAddr(), "SSH-2.0-", 2*DefaultMaxStartups.PerSource)
	if len(lb) != 2*DefaultMaxStartups.PerSource {
		t.Fatalf("known address: %d of %d connections greeted", len(lb), 2*DefaultMaxStartups.PerSource)
	}
}

func TestMaxStartupsDropProbability(t *testing.T) {
	m := MaxStartups{Start: 10, Rate: 30, Full: 100}
	for _, c := range []struct {
		n    int
		want float64
	}{{0, 0}, {9, 0}, {10, 0.3}, {55, 0.65}, {99, 0.3 + 0.7*89/90}, {100, 1}, {500, 1}} {
		if got := m.dropProbability(c.n); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("%d waiting: drop probability %.3f, want %.3f", c.n, got, c.want)
		}
	}
}

// TestAccountSessionLimit: an account holds at most its limit of sessions,
// SFTP and FTP together; one more is refused with a message saying why,
// and served again once one ends.
func TestAccountSessionLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Limits = NewLimits(MaxStartups{}, 2) })
	var open []*ssh.Client
	for i := range 2 {
		c, _, err := sftpLogin(h, "127.0.0.1", user, password)
		if err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
		open = append(open, c)
	}
	_, banner, err := sftpLogin(h, "127.0.0.1", user, password)
	if err == nil || !strings.Contains(banner, "too many sessions for account alice") {
		t.Fatalf("third SFTP session: err %v, banner %q; want a refusal naming the limit", err, banner)
	}
	_, err = ftpLogin(h, "127.0.0.1", user, password)
	if err == nil || !strings.Contains(err.Error(), "too many sessions for account alice") {
		t.Fatalf("FTP session beyond the limit: %v", err)
	}
	// Another account is not affected.
	if c, err := ftpLogin(h, "127.0.0.1", "bob", "hunter2"); err != nil {
		t.Fatalf("bob: %v", err)
	} else {
		c.Quit()
	}
	open[0].Close()
	eventually(t, 10*time.Second, "a place freed by the closed session", func() bool {
		c, err := ftpLogin(h, "127.0.0.1", user, password)
		if err != nil {
			return false
		}
		c.Quit()
		return true
	})
	open[1].Close()
}

// ftpControl is a raw FTP control connection, logged in.
func ftpControl(t *testing.T, h *harness) *textproto.Conn {
	t.Helper()
	c, err := textproto.Dial("tcp", h.ftpAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		cmd  string
		code int
	}{{"USER " + user, 331}, {"PASS " + password, 230}} {
		if _, err := c.Cmd("%s", step.cmd); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadResponse(step.code); err != nil {
			t.Fatalf("%s: %v", strings.Fields(step.cmd)[0], err)
		}
	}
	return c
}

func pasv(c *textproto.Conn) error {
	if _, err := c.Cmd("PASV"); err != nil {
		return err
	}
	_, _, err := c.ReadResponse(227)
	return err
}

// heldPorts counts the passive ports of h someone listens on.
func heldPorts(h *harness) int {
	n := 0
	for p := h.cfg.PassiveMin; p <= h.cfg.PassiveMax; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			n++
			continue
		}
		l.Close()
	}
	return n
}

// TestPassivePortsNotHoarded: a session holds at most one passive port
// however many PASV it sends, and a port nobody connects to is freed after
// PassiveIdle, so that sessions taking every port leave service for others
// within seconds (not the 15 minutes of an idle control connection).
func TestPassivePortsNotHoarded(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.PassiveIdle = time.Second })
	ports := h.cfg.PassiveMax - h.cfg.PassiveMin + 1

	one := ftpControl(t, h)
	for i := range 3 * ports {
		if err := pasv(one); err != nil {
			t.Fatalf("PASV %d: %v", i+1, err)
		}
	}
	// (ftpserverlib answers 227 before it closes the previous listener.)
	eventually(t, 2*time.Second, "one session holding one passive port", func() bool { return heldPorts(h) == 1 })

	// Every port taken by sessions that never connect.
	for range ports - 1 {
		if err := pasv(ftpControl(t, h)); err != nil {
			t.Fatalf("hoarding PASV: %v", err)
		}
	}
	if n := heldPorts(h); n < ports-1 {
		t.Fatalf("%d of %d ports held by the hoarders", n, ports)
	}
	start := time.Now()
	eventually(t, 10*time.Second, "the unused passive ports freed", func() bool { return heldPorts(h) == 0 })
	t.Logf("%d sessions held all %d passive ports; freed after %s (PassiveIdle 1s)", ports, ports, time.Since(start).Round(time.Millisecond))

	// The hoarders are still connected, and another client transfers.
	if _, err := one.Cmd("NOOP"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := one.ReadResponse(200); err != nil {
		t.Fatalf("hoarding session closed: %v", err)
	}
	c := h.mustFTP()
	want := randomBytes(t, 64<<10)
	if err := c.Stor("after-hoarding.bin", strings.NewReader(string(want))); err != nil {
		t.Fatalf("upload after the hoarding: %v", err)
	}
	r, err := c.Retr("after-hoarding.bin")
	if err != nil {
		t.Fatalf("download after the hoarding: %v", err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || sum(got) != sum(want) {
		t.Fatalf("download after the hoarding: %d bytes, %v", len(got), err)
	}
}
