package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	ts "github.com/udmg/gateway/testsupport"
)

// renewalBuckets reads the cumulative buckets of udmg_lease_renewal_seconds.
func renewalBuckets(t *testing.T, api *ts.APIClient) map[float64]float64 {
	t.Helper()
	r, err := api.Do("GET", "/metrics", nil)
	if err != nil || r.Status != 200 {
		t.Fatalf("GET /metrics: %v %v", r, err)
	}
	out := map[float64]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(r.Body)))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, `udmg_lease_renewal_seconds_bucket{le="`)
		if !ok {
			continue
		}
		le, count, _ := strings.Cut(rest, `"} `)
		v, err := strconv.ParseFloat(count, 64)
		if err != nil {
			continue
		}
		b, err := strconv.ParseFloat(le, 64)
		if le == "+Inf" {
			b, err = 1e9, nil
		}
		if err == nil {
			out[b] = v
		}
	}
	return out
}

// quantile is the upper bound of the bucket holding the q-quantile of the
// renewals between two readings, and how many there were.
func quantile(before, after map[float64]float64, q float64) (float64, int) {
	les := slices.Sorted(func(yield func(float64) bool) {
		for le := range after {
			if !yield(le) {
				return
			}
		}
	})
	total := after[1e9] - before[1e9]
	for _, le := range les {
		if after[le]-before[le] >= q*total {
			return le, int(total)
		}
	}
	return 1e9, int(total)
}

func sshLogin(addr, src, user, pass string) error {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(40 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(raw, addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password(pass)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		return err
	}
	ssh.NewClient(c, chans, reqs).Close()
	return nil
}

// TestLoginStorm: 300 clients, each from its own address, send wrong
// passwords for admin over SFTP as fast as they can for 20s (on the same
// cores as the node). The ACTIVE node keeps its lease (renewal p99 under
// Deadline − Heartbeat), a client that logged in before the storm
// (OpenSSH sftp, another account, its own address) still logs in, and so
// does the administrator on the API from its usual address. Prints the
// figures.
func TestLoginStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	c := ts.NewCluster(t, 1)
	p := c.WaitOneActive(60*time.Second, "")
	admin := p.Admin()
	metrics := admin.Tokened(t) // the storm slows admin's Basic logins, not tokens
	// alice is a partner's client: OpenSSH's sftp in its own process,
	// with a key, from its own address.
	key := filepath.Join(t.TempDir(), "id")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	admin.Must(t, 201, "POST", "/api/servers/sftp/accounts", map[string]any{"login": "alice", "password": "alice-password",
		"publicKeys": []string{strings.TrimSpace(string(pub))}})
	alice := func() error {
		out, err := ts.SFTP(p.SFTPAddr(), "alice", key, "ls\n", "-o", "BindAddress=127.2.0.1", "-o", "ConnectTimeout=10")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := alice(); err != nil {
		t.Fatalf("alice before the storm: %v", err)
	}

	const storm = 20 * time.Second
	base0 := renewalBuckets(t, metrics)
	time.Sleep(storm / 2) // the quiet baseline, same metric
	base1 := renewalBuckets(t, metrics)

	changes := p.CountLog("mode changed")
	var attempts, served atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := fmt.Sprintf("127.1.%d.%d", i/200, i%200+1)
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				attempts.Add(1)
				err := sshLogin(p.SFTPAddr(), src, "admin", fmt.Sprintf("wrong-%d-%d", i, n))
				if err == nil {
					t.Errorf("a wrong password logged in")
					return
				}
				if strings.Contains(err.Error(), "unable to authenticate") {
					served.Add(1) // reached the password check (else dropped by MaxStartups)
				}
			}
		}()
	}
	var legit []time.Duration
	rounds, legitTries, legitOK := 0, 0, 0
	start := time.Now()
	for time.Since(start) < storm {
		rounds++
		t0 := time.Now()
		ok := false
		for try := 0; try < 5 && !ok; try++ { // a client retries a dropped connection
			legitTries++
			ok = alice() == nil
		}
		if ok {
			legitOK++
			legit = append(legit, time.Since(t0))
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The administrator, logged in from this address before, is not
	// locked out of the API by the storm on its name.
	var adminLat []time.Duration
	for range 3 {
		t0 := time.Now()
		admin.Must(t, 200, "GET", "/api/sb_healthcheck", nil)
		adminLat = append(adminLat, time.Since(t0))
	}
	during := renewalBuckets(t, metrics)
	close(stop)
	wg.Wait()

	if code, body := p.Ping(); code != 200 {
		t.Fatalf("the node is not ACTIVE after the storm: %d %s", code, body)
	}
	if n := p.CountLog("mode changed"); n != changes {
		t.Errorf("mode changed during the storm:\n%s", p.LogTail(30))
	}
	q99, n := quantile(base1, during, 0.99)
	b99, bn := quantile(base0, base1, 0.99)
	slices.Sort(legit)
	var lp50, lp99 time.Duration
	if len(legit) > 0 {
		lp50, lp99 = legit[len(legit)/2], legit[len(legit)*99/100]
	}
	t.Logf("login storm, 300 addresses x %s: %d wrong-password connections, %d reached the password check (rest dropped by MaxStartups or refused by the throttle)",
		storm, attempts.Load(), served.Load())
	t.Logf("lease renewals: p99 <= %gs over %d during the storm, <= %gs over %d before", q99, n, b99, bn)
	t.Logf("a known client (OpenSSH sftp, key, another account): %d of %d rounds logged in within 5 tries (%d connections), p50 %s, p99 %s",
		legitOK, rounds, legitTries, lp50.Round(time.Millisecond), lp99.Round(time.Millisecond))
	t.Logf("admin's API Basic logins from its known address during the storm: %v", adminLat)
	if slices.Max(adminLat) > 10*time.Second {
		t.Errorf("admin's API login took %s during the storm on its name", slices.Max(adminLat))
	}
	if q99 > 1.5 {
		t.Errorf("lease renewal p99 %gs during the storm, past Deadline - Heartbeat (1.5s)", q99)
	}
	if legitOK == 0 {
		t.Errorf("no legitimate login during the storm")
	}
}
