package cluster_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	ts "github.com/udmg/gateway/testsupport"
)

// seedState puts, through the API of the ACTIVE node, a state of size on
// cluster c: size.Accounts local accounts of server sftp (key logins: no
// bcrypt per account), size.Partners partners with an account each, and
// size.Transfers live pulls from partners on a closed port, each failed
// once and waiting for a retry in 24 h (PLANNED: they stay live across
// every failover, where RUNNING ones would end at the first takeover).
func seedState(t *testing.T, c *ts.Cluster, size ts.StateSize) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	// The pulls' directory: a takeover opens GatewayHome once the state
	// holds transfers of local files.
	if err := os.MkdirAll(filepath.Join(c.Home, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	active := c.WaitOneActive(30*time.Second, "PASSIVE")
	api := active.Admin().Tokened(t)
	start := time.Now()
	// each sends the requests of i in [0, n) from 8 clients at once (Raft
	// commits them in batches).
	each := func(n int, req func(i int) (path string, body any)) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < n; i += 8 {
					path, body := req(i)
					r, err := api.Do("POST", path, body)
					if err == nil && r.Status != 201 {
						err = fmt.Errorf("%s", r)
					}
					if err != nil {
						errs <- fmt.Errorf("POST %s: %w", path, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	each(size.Accounts, func(i int) (string, any) {
		return "/api/servers/sftp/accounts", map[string]any{"login": fmt.Sprintf("login-%d", i), "publicKeys": []string{authorized}}
	})
	each(size.Partners, func(i int) (string, any) {
		return "/api/partners", map[string]any{"name": fmt.Sprintf("partner-%d", i), "protocol": "sftp", "address": closed, "hostKey": authorized}
	})
	each(size.Partners, func(i int) (string, any) {
		return fmt.Sprintf("/api/partners/partner-%d/accounts", i), map[string]any{"login": "gw", "password": "sealed"}
	})
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "pull", "direction": "receive", "path": "/out", "localDir": "in"})
	each(size.Transfers, func(i int) (string, any) {
		return "/api/transfers", map[string]any{"rule": "pull", "partner": fmt.Sprintf("partner-%d", i%size.Partners), "account": "gw",
			"file": fmt.Sprintf("%d.bin", i), "retryDelay": "24h"}
	})
	// Every pull tried once and waiting: none RUNNING, all PLANNED.
	var planned, running float64
	if !ts.Eventually(10*time.Minute, func() bool {
		planned, _ = metric(t, active, `udmg_transfers{state="PLANNED"}`)
		running, _ = metric(t, active, `udmg_transfers{state="RUNNING"}`)
		return planned == float64(size.Transfers) && running == 0
	}) {
		t.Fatalf("seeded transfers never all waiting: %v PLANNED, %v RUNNING", planned, running)
	}
	t.Logf("state seeded in %s: %d accounts, %d partners, %d live transfers", time.Since(start).Round(time.Second), size.Accounts, size.Partners, size.Transfers)
	// Every node snapshots the seeded state (raft checks every 2 to 4
	// minutes), so that a node killed in the trials starts again from a
	// snapshot and a short log, as a node of a long-running cluster does.
	start = time.Now()
	if !ts.Eventually(10*time.Minute, func() bool { return len(snapshotSizes(c)) == len(c.Nodes) }) {
		t.Fatalf("not every node took a snapshot of the seeded state: %v", snapshotSizes(c))
	}
	t.Logf("every node snapshotted the seeded state within %s: bytes %v", time.Since(start).Round(time.Second), snapshotSizes(c))
}

// snapshotSizes gives each node's newest raft snapshot size (bytes).
func snapshotSizes(c *ts.Cluster) map[string]int64 {
	out := map[string]int64{}
	for _, p := range c.Nodes {
		files, _ := filepath.Glob(filepath.Join(p.DataDir, "snapshots", "*", "state.bin"))
		var newest time.Time
		for _, f := range files {
			if strings.HasSuffix(filepath.Dir(f), ".tmp") {
				continue // being written (raft renames it when done)
			}
			if fi, err := os.Stat(f); err == nil && fi.ModTime().After(newest) {
				newest, out[p.Name] = fi.ModTime(), fi.Size()
			}
		}
	}
	return out
}

// nodeStart matches the first line a node logs at start and the one it
// logs once its mirror and raft stores are open and the newest snapshot
// restored (raft logs the restore itself below the default level).
var nodeStart = regexp.MustCompile(`^time=(\S+) .*msg="(license loaded|node started)"`)

// startTimes reads from the nodes' logs how long each start took to
// open the raft stores and restore the newest snapshot.
func startTimes(c *ts.Cluster) []time.Duration {
	var out []time.Duration
	for _, p := range c.Nodes {
		var began time.Time
		for _, l := range strings.Split(p.Log(), "\n") {
			m := nodeStart.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				continue
			}
			if m[2] == "license loaded" {
				began = at
			} else if !began.IsZero() {
				out = append(out, at.Sub(began))
				began = time.Time{}
			}
		}
	}
	return out
}
