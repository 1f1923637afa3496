package testsupport

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/fsm"
)

// StateSize is how large a state LargeState builds: the issue's "flat cost
// as the state grows" figures use 10,000 local accounts, 1,000 partners
// and 10,000 live transfers.
type StateSize struct {
	Accounts, Partners, Transfers int
}

// IssueState is the size of the issue's large state.
var IssueState = StateSize{Accounts: 10000, Partners: 1000, Transfers: 10000}

// Fixture names in the states LargeState builds.
const (
	StateHolder   = "node-a"   // holds the lease (epoch 1) and a license slot
	StateServer   = "sftp"     // the local SFTP server holding every account
	StateLogin    = "login-0"  // an account whose password is StatePassword
	StatePassword = "password" // hashed at bcrypt.MinCost (see LargeState)
	StateAdmin    = "admin"    // an administrator with every permission
)

// LargeState applies to m, as a leader would through Raft, a lease held by
// StateHolder, the node registry entry, an administrator, one SFTP server
// with size.Accounts accounts, size.Partners partners each with a remote
// account, and size.Transfers live (RUNNING) transfers. Every password hash
// is bcrypt.MinCost, so that a benchmarked login shows what the state
// costs rather than bcrypt's default cost. The 100,000 history rows of the
// issue live in the mirror's table, not in the state (the machine keeps a
// bounded window of finished transfers), so no login or /ping reads them.
func LargeState(tb testing.TB, m *fsm.Machine, size StateSize) {
	tb.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(StatePassword), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	apply := func(c fsm.Command) {
		tb.Helper()
		c.At = at
		b, err := fsm.Encode(c)
		if err != nil {
			tb.Fatal(err)
		}
		if r := m.Apply(b); r.Err != nil {
			tb.Fatalf("apply %s: %v", c.Op, r.Err)
		}
	}
	apply(fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: StateHolder, Session: "s", Epoch: 1, Duration: time.Hour}})
	apply(fsm.Command{Op: fsm.OpNodeRegister, Node: &fsm.Node{ID: StateHolder, Hostname: "a", AdminAddr: "127.0.0.1:8080"}})
	apply(fsm.Command{Op: fsm.OpSlots, Licensed: []string{StateHolder}})
	perms := map[string]string{"administration": "rwx", "servers": "rwx", "partners": "rwx", "rules": "rwx", "users": "rwx", "transfers": "rwx"}
	apply(fsm.Command{Op: fsm.OpInit, Init: &fsm.InitArgs{Admin: fsm.User{Name: StateAdmin, Hash: hash, Perms: perms}}})
	apply(fsm.Command{Op: fsm.OpServerPut, Server: &fsm.Server{Name: StateServer, Protocol: fsm.ProtoSFTP, Port: 2222, Enabled: true}})
	for i := range size.Accounts {
		apply(fsm.Command{Op: fsm.OpAccountPut, Account: &fsm.LocalAccount{Server: StateServer, Login: fmt.Sprintf("login-%d", i), PasswordHash: hash}})
	}
	for i := range size.Partners {
		name := fmt.Sprintf("partner-%d", i)
		apply(fsm.Command{Op: fsm.OpPartnerPut, Partner: &fsm.Partner{Name: name, Protocol: fsm.ProtoSFTP, Address: "partner.example:22",
			HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}})
		apply(fsm.Command{Op: fsm.OpRemoteAccountPut, RemoteAccount: &fsm.RemoteAccount{Partner: name, Login: "gw", Password: "sealed"}})
	}
	for i := range size.Transfers {
		apply(fsm.Command{Op: fsm.OpTransferAdd, Epoch: 1, Transfer: &fsm.Transfer{ID: uint64(i + 1), IsServer: true, Protocol: fsm.ProtoSFTP,
			Agent: StateServer, Account: fmt.Sprintf("login-%d", i%max(size.Accounts, 1)), LocalPath: fmt.Sprintf("in/%d.bin", i),
			RemotePath: fmt.Sprintf("%d.bin", i), Filesize: -1, Status: fsm.StatusRunning, Step: fsm.StepData, Start: at, NodeID: StateHolder}})
	}
}

// LoopP99 runs f under b.Loop and reports, beside the mean, the 99th
// percentile of one call as p99-ns: the issue's goals on the large state
// SeedState puts, through the API of the ACTIVE node, a state of size on
// cluster c (IssueState: the issue's large state, as a cluster that ran
// for months holds it; LargeState builds it without Raft): size.Accounts local accounts of server sftp (key logins: no
// bcrypt per account), size.Partners partners with an account each, and
// size.Transfers live pulls from partners on a closed port, each failed
// once and waiting for a retry in 24 h (PLANNED: they stay live across
// every failover, where RUNNING ones would end at the first takeover).
func SeedState(t testing.TB, c *Cluster, size StateSize) {
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
	if !Eventually(10*time.Minute, func() bool {
		planned, _ = active.Metric(`udmg_transfers{state="PLANNED"}`)
		running, _ = active.Metric(`udmg_transfers{state="RUNNING"}`)
		return planned == float64(size.Transfers) && running == 0
	}) {
		t.Fatalf("seeded transfers never all waiting: %v PLANNED, %v RUNNING", planned, running)
	}
	t.Logf("state seeded in %s: %d accounts, %d partners, %d live transfers", time.Since(start).Round(time.Second), size.Accounts, size.Partners, size.Transfers)
}

// Metric reads one sample of the node's /metrics, by its name with labels
// as the text shows it (udmg_transfers{state="PLANNED"}); false when the
// node does not answer or has no such sample.
func (p *Proc) Metric(name string) (float64, bool) {
	r, err := p.Admin().Do("GET", "/metrics", nil)
	if err != nil || r.Status != 200 {
		return 0, false
	}
	for _, line := range strings.Split(string(r.Body), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// are percentiles.
func LoopP99(b *testing.B, f func()) {
	b.Helper()
	var times []time.Duration
	for b.Loop() {
		t0 := time.Now()
		f()
		times = append(times, time.Since(t0))
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)*99/100]), "p99-ns")
}
