package cluster_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"

	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"golang.org/x/crypto/bcrypt"

	"github.com/udmg/gateway/cluster"
	ts "github.com/udmg/gateway/testsupport"
)

func terms(t *testing.T, c *ts.Cluster) []float64 {
	t.Helper()
	var out []float64
	for _, p := range c.Nodes {
		v, ok := p.Metric("udmg_raft_term")
		if !ok {
			t.Fatalf("%s: no udmg_raft_term in /metrics", p.Name)
		}
		out = append(out, v)
	}
	return out
}

// leafCert makes a node-like certificate for id signed by parent/parentKey
// (self-signed when parent is nil), valid from notBefore to notAfter.
func leafCert(t *testing.T, id string, parent *x509.Certificate, parentKey ed25519.PrivateKey, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: id},
		DNSNames:     []string{"mft"},
		NotBefore:    notBefore, NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// rogueStream is a raft.StreamLayer that dials with a chosen client
// certificate (nil: plain TCP), as an attacker's own Raft would.
type rogueStream struct {
	net.Listener
	cert *tls.Certificate
	tls  bool
}

func (s rogueStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if !s.tls {
		return net.DialTimeout("tcp", string(addr), timeout)
	}
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"udmg-raft"}}
	if s.cert != nil {
		// Sent whatever CAs the server asks for (Go's client would
		// otherwise send none for a certificate of another CA).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return s.cert, nil }
	}
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(addr), cfg)
}

// forgedUserPut is the old attack's payload: a log entry creating an
// administrator "intruder".
func forgedUserPut(t *testing.T) []byte {
	hash, _ := bcrypt.GenerateFromPassword([]byte("intruder-pw"), bcrypt.MinCost)
	perms := map[string]string{}
	for _, d := range []string{"administration", "servers", "partners", "rules", "users", "transfers"} {
		perms[d] = "rwd"
	}
	b, err := json.Marshal(map[string]any{"op": "user.put", "v": 1, "at": time.Now(), "user": map[string]any{"name": "intruder", "hash": hash, "perms": perms}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRogueRaftClients: a process that is no member (no certificate, a
// self-signed one, one from another CA, an expired one from the right CA,
// or plain TCP) gets no answer from the Raft port, moves no term and plants
// no user with a forged AppendEntries; each refusal is logged with its
// reason and the remote address, a few lines however often it retries.
func TestRogueRaftClients(t *testing.T) {
	c := ts.NewCluster(t, 3)
	c.WaitOneActive(30*time.Second, "PASSIVE")
	before := terms(t, c)

	ca, caKey, err := cluster.TokenCA(c.Token)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	otherCA := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	now := time.Now()
	selfSigned := leafCert(t, "rogue", nil, nil, now.Add(-time.Hour), now.Add(time.Hour))
	fromOther := leafCert(t, "rogue", otherCA, otherKey, now.Add(-time.Hour), now.Add(time.Hour))
	expired := leafCert(t, "rogue", ca, caKey, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	rogues := []struct {
		name   string
		stream rogueStream
		reason string // in the refusal logged by the target
	}{
		{"plain tcp", rogueStream{}, "not TLS"},
		{"no certificate", rogueStream{tls: true}, "no client certificate"},
		{"self-signed", rogueStream{tls: true, cert: &selfSigned}, "not signed by this cluster's CA"},
		{"other CA", rogueStream{tls: true, cert: &fromOther}, "not signed by this cluster's CA"},
		{"expired", rogueStream{tls: true, cert: &expired}, "expired"},
	}
	entry := forgedUserPut(t)
	for _, r := range rogues {
		t.Run(r.name, func(t *testing.T) {
			for _, p := range c.Nodes {
				target := raft.ServerAddress(net.JoinHostPort(p.IP, strconv.Itoa(ts.RaftPort)))
				last, _ := p.Metric("udmg_raft_last_index")
				term, _ := p.Metric("udmg_raft_term")
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				r.stream.Listener = ln
				trans := raft.NewNetworkTransport(r.stream, 1, 2*time.Second, io.Discard)
				req := raft.AppendEntriesRequest{
					RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("rogue"), Addr: []byte(ln.Addr().String())},
					Term:      uint64(term) + forgedTermJump, PrevLogEntry: uint64(last), PrevLogTerm: uint64(term),
					Entries:           []*raft.Log{{Index: uint64(last) + 1, Term: uint64(term) + forgedTermJump, Type: raft.LogCommand, Data: entry}},
					LeaderCommitIndex: uint64(last) + 1,
				}
				// Retried like a real Raft peer would: the refusals must not
				// be logged once per attempt.
				for range 5 {
					var resp raft.AppendEntriesResponse
					if err := trans.AppendEntries("x", target, &req, &resp); err == nil {
						t.Errorf("%s answered a rogue AppendEntries: %+v", p.Name, resp)
					}
				}
				trans.Close()
				if r.stream.tls {
					rogueForward(t, p, r.stream.cert)
				}
				if !ts.Eventually(5*time.Second, func() bool { return strings.Contains(p.Log(), r.reason) }) {
					t.Errorf("%s logged no refusal naming %q; log tail:\n%s", p.Name, r.reason, p.LogTail(10))
				}
				if n := refusalLines(p, r.reason); n > 2 {
					t.Errorf("%s logged %d refusal lines for 5 attempts from one address, want at most 2", p.Name, n)
				}
			}
		})
	}
	// A node that took the forged AppendEntries would have adopted its term
	// (its own plus forgedTermJump); elections of a loaded machine move terms
	// by a few at most, so they are told apart from the attack.
	after := terms(t, c)
	for i := range before {
		if after[i] >= before[i]+forgedTermJump {
			t.Errorf("%s: term moved from %v to %v: a rogue AppendEntries was taken", c.Nodes[i].Name, before[i], after[i])
		} else if after[i] != before[i] {
			t.Logf("%s: term %v -> %v (elections, not the rogue's +%d)", c.Nodes[i].Name, before[i], after[i], forgedTermJump)
		}
	}
	for _, p := range c.Nodes {
		if resp, err := p.Admin().As("intruder", "intruder-pw").Do("GET", "/api/users", nil); err == nil && resp.Status != http.StatusUnauthorized {
			t.Errorf("%s: the forged intruder got %s", p.Name, resp)
		}
	}
	if !strings.Contains(c.Nodes[0].Log(), "127.0.0.1") {
		t.Errorf("refusals do not name the remote address")
	}

	// Gossip without the key (plain memberlist) is not answered either.
	mc := memberlist.DefaultLANConfig()
	mc.Name, mc.BindAddr, mc.BindPort, mc.LogOutput = "rogue-gossip", "127.0.0.1", 0, io.Discard
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Shutdown()
	if n, err := ml.Join([]string{net.JoinHostPort(c.Nodes[0].IP, strconv.Itoa(ts.GossipPort))}); err == nil || n > 0 {
		t.Errorf("plain gossip joined the cluster (%d contacted)", n)
	}
	if len(ml.Members()) != 1 {
		t.Errorf("the rogue gossip member learnt %d members", len(ml.Members()))
	}
	if !ts.Eventually(5*time.Second, func() bool { return c.Nodes[0].CountLog("gossip keys differ") > 0 }) {
		t.Errorf("node1 did not log the plain gossip as refused")
	}
}

// forgedTermJump is how far above a node's term the rogue AppendEntries
// claims to be.
const forgedTermJump = 1000

func refusalLines(p *ts.Proc, reason string) int {
	n := 0
	for _, l := range strings.Split(p.Log(), "\n") {
		if strings.Contains(l, "refused cluster connection") && strings.Contains(l, reason) {
			n++
		}
	}
	return n
}

// TestWrongTokenNeverVoter: a node with another JoinToken is refused by
// gossip (its keys differ) with a line on both sides; one that has the
// gossip key but not the cluster's certificates joins gossip and is refused
// as a voter, logged once, on both sides.
func TestWrongTokenNeverVoter(t *testing.T) {
	c := ts.NewCluster(t, 3)
	active := c.WaitOneActive(30*time.Second, "PASSIVE")
	wrong := ts.NewJoinToken()
	stranger := c.AddNode("UDMG_CLUSTER_JOINTOKEN=" + wrong)
	gossipKey := base64.StdEncoding.EncodeToString(cluster.DeriveKey(c.Token, "gossip"))
	impostor := c.AddNode("UDMG_CLUSTER_JOINTOKEN="+wrong, "UDMG_CLUSTER_GOSSIPKEY="+gossipKey)
	for _, p := range []*ts.Proc{stranger, impostor} {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if !ts.Eventually(20*time.Second, func() bool { return stranger.CountLog("gossip keys differ") > 0 }) {
		t.Errorf("the stranger did not log why gossip refused it:\n%s", stranger.LogTail(15))
	}
	if !ts.Eventually(20*time.Second, func() bool { return c.Nodes[0].CountLog("gossip keys differ") > 0 }) {
		t.Errorf("node1 did not log the stranger's undecryptable gossip:\n%s", c.Nodes[0].LogTail(15))
	}
	leaderLogs := func(s string) int {
		n := 0
		for _, p := range c.Nodes[:3] {
			n += p.CountLog(s)
		}
		return n
	}
	refusal := "did not prove its identity"
	if !ts.Eventually(20*time.Second, func() bool { return leaderLogs(refusal) > 0 }) {
		t.Fatalf("no node refused the impostor as a voter; ACTIVE log:\n%s", active.LogTail(20))
	}
	if !ts.Eventually(10*time.Second, func() bool { return impostor.CountLog("refused cluster connection") > 0 }) {
		t.Errorf("the impostor did not log the refused handshake:\n%s", impostor.LogTail(15))
	}
	// Several reconcile rounds and retries later: still one line, still
	// three voters, and neither newcomer serves or stands by.
	time.Sleep(8 * time.Second) // the retries being counted happen meanwhile; nothing to poll for
	if n := leaderLogs(refusal); n != 1 {
		t.Errorf("impostor refusal logged %d times, want once", n)
	}
	if n := c.Nodes[0].CountLog("gossip keys differ"); n > 2 {
		t.Errorf("node1 logged the stranger's gossip %d times in 8 s, want it rate-limited", n)
	}
	for _, p := range c.Nodes[:3] {
		if v, ok := p.Metric("udmg_raft_voters"); !ok || v != 3 {
			t.Errorf("%s: %v voters, want 3", p.Name, v)
		}
	}
	for _, p := range []*ts.Proc{stranger, impostor} {
		if _, mode := p.Ping(); mode != "OFFLINE" {
			t.Errorf("%s answers %q, want OFFLINE", p.Name, mode)
		}
	}
}

// TestMultiNodeWithoutIdentityRefused: forming or joining a multi-node
// cluster with neither JoinToken nor TLS files stops start-up with one
// line naming both options.
func TestMultiNodeWithoutIdentityRefused(t *testing.T) {
	bin := ts.ServerBinary(t)
	for name, env := range map[string]string{"join": "UDMG_CLUSTER_JOIN=127.0.0.9:7946", "bootstrap": "UDMG_CLUSTER_BOOTSTRAPEXPECT=3"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(bin)
			cmd.Env = append(cmd.Environ(), env, "UDMG_CLUSTER_DATADIR="+filepath.Join(dir, "node"), "UDMG_PATHS_GATEWAYHOME="+filepath.Join(dir, "home"))
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want 2; output:\n%s", err, out)
			}
			msg := strings.TrimSpace(string(out))
			if strings.Contains(msg, "\n") {
				t.Fatalf("not one line:\n%s", msg)
			}
			for _, w := range []string{"[cluster] JoinToken", "[cluster] TLSCert/TLSKey/TLSCA"} {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not name %s", msg, w)
				}
			}
		})
	}
}

// TestTokenRotation rolls a three-node cluster from token O to token T by
// three rounds of restarts ("O,T", "T,O", then "T"), one node at a time,
// as README says, and checks that one node is ACTIVE after every restart
// and the others stand by.
func TestTokenRotation(t *testing.T) {
	c := ts.NewCluster(t, 3)
	c.WaitOneActive(30*time.Second, "PASSIVE")
	old, next := c.Token, ts.NewJoinToken()
	prober := ts.StartProber(c.Nodes, 50*time.Millisecond)
	defer prober.Stop()
	start := time.Now()
	var worst time.Duration
	for _, value := range []string{old + "," + next, next + "," + old, next} {
		for _, p := range c.Nodes {
			p.Signal(syscall.SIGTERM)
			if !p.Wait(20 * time.Second) {
				t.Fatalf("%s did not stop", p.Name)
			}
			p.SetEnv("UDMG_CLUSTER_JOINTOKEN=" + value)
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			c.WaitOneActive(30*time.Second, "PASSIVE")
		}
	}
	prober.Stop()
	gaps := serveGaps(prober.Serves(), start)
	for _, g := range gaps {
		worst = max(worst, g)
	}
	overlap, pair := prober.Overlap()
	if overlap > 0 {
		t.Errorf("two nodes served at once for %s (%s)", overlap, pair)
	}
	// A handover (SIGTERM of the ACTIVE) is a release, not a lease expiry:
	// the next node serves within about a heartbeat or two.
	if worst > 4*time.Second {
		t.Errorf("no ACTIVE node for %s during the rotation", worst)
	}
	t.Logf("rolling token rotation: 9 restarts, longest time without an ACTIVE node %s", worst.Round(time.Millisecond))
	for _, p := range c.Nodes {
		if v, ok := p.Metric("udmg_raft_voters"); !ok || v != 3 {
			t.Errorf("%s: %v voters after rotation, want 3", p.Name, v)
		}
	}
}

// serveGaps lists the intervals between consecutive serves (any node).
func serveGaps(serves []ts.Serve, from time.Time) []time.Duration {
	var out []time.Duration
	last := from
	for _, s := range serves {
		if s.Dial.After(last) {
			out = append(out, s.Dial.Sub(last))
		}
		if s.Recv.After(last) {
			last = s.Recv
		}
	}
	return out
}

// adminCert writes a self-signed certificate for the admin API of every
// node (127.0.0.0/8) and returns the certificate and key paths.
func adminCert(t *testing.T, dir string) (string, string) {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "udmg admin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	certPath, keyPath := filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// TestForwardedWritesOverClusterTLS: with HTTPS on the admin API, a write
// sent to a PASSIVE node is carried out by the leader and answered as a
// local one (201, JSON errors); it travels on the Raft port's mutual TLS,
// where the rogue clients of TestRogueRaftClients get no HTTP answer.
func TestForwardedWritesOverClusterTLS(t *testing.T) {
	dir := t.TempDir()
	crt, key := adminCert(t, dir)
	c := ts.NewCluster(t, 3, "UDMG_ADMIN_TLSCERT="+crt, "UDMG_ADMIN_TLSKEY="+key)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	modes := func() []string {
		var out []string
		for _, p := range c.Nodes {
			resp, err := client.Get("https://" + net.JoinHostPort(p.IP, strconv.Itoa(ts.AdminPort)) + "/ping")
			if err != nil {
				out = append(out, "")
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			out = append(out, strings.TrimSpace(string(b)))
		}
		return out
	}
	var passive *ts.Proc
	if !ts.Eventually(30*time.Second, func() bool {
		m := modes()
		active := 0
		passive = nil
		for i, s := range m {
			switch s {
			case "ACTIVE":
				active++
			case "PASSIVE":
				passive = c.Nodes[i]
			}
		}
		return active == 1 && passive != nil
	}) {
		t.Fatalf("no ACTIVE and PASSIVE over HTTPS: %q", modes())
	}
	do := func(method, body string) (int, map[string]any, time.Duration) {
		req, _ := http.NewRequest(method, "https://"+net.JoinHostPort(passive.IP, strconv.Itoa(ts.AdminPort))+"/api/users", strings.NewReader(body))
		req.SetBasicAuth("admin", ts.AdminPassword)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		took := time.Since(start)
		var v map[string]any
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s through PASSIVE %s: %d, not JSON: %q", method, passive.Name, resp.StatusCode, b)
		}
		return resp.StatusCode, v, took
	}
	// The initial administrator is created by the ACTIVE node: the PASSIVE
	// one knows it once that entry reached it.
	if !ts.Eventually(30*time.Second, func() bool { status, _, _ := do("GET", ""); return status == http.StatusOK }) {
		t.Fatalf("PASSIVE %s never knew the administrator", passive.Name)
	}
	var took []time.Duration
	for i := range 20 {
		status, v, d := do("POST", fmt.Sprintf(`{"username":"fwd%d","password":"pw-%d-long-enough","perms":{"transfers":"rw-"}}`, i, i))
		if status != http.StatusCreated {
			t.Fatalf("forwarded create: %d %v, want 201", status, v)
		}
		took = append(took, d)
	}
	status, v, _ := do("POST", `{"username":`)
	if status != http.StatusBadRequest || v["error"] == nil {
		t.Errorf("forwarded bad request: %d %v, want 400 with a JSON error", status, v)
	}
	slices.Sort(took)
	t.Logf("forwarded write over mTLS (HTTPS to a PASSIVE node): median %s, max %s over %d creates", took[len(took)/2].Round(time.Microsecond), took[len(took)-1].Round(time.Microsecond), len(took))
	if passive.CountLog("forwarding to the leader failed") > 0 {
		t.Errorf("PASSIVE logged a failed forward:\n%s", passive.LogTail(10))
	}
}

// rogueForward sends a forwarded-write request with cert (nil: none) on the
// Raft port's forwarding protocol and fails the test if any HTTP answer
// comes back.
func rogueForward(t *testing.T, p *ts.Proc, cert *tls.Certificate) {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"udmg-forward"}}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", net.JoinHostPort(p.IP, strconv.Itoa(ts.RaftPort)), cfg)
	if err != nil {
		return // refused during the handshake: no answer
	}
	defer conn.Close()
	body := `{"username":"intruder2","password":"intruder-password","perms":{"users":"rwd"}}`
	fmt.Fprintf(conn, "POST /api/users HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		base64.StdEncoding.EncodeToString([]byte("admin:"+ts.AdminPassword)), len(body), body)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(conn)
	if strings.Contains(string(b), "HTTP/") {
		t.Errorf("%s answered a rogue forwarded write: %q", p.Name, b)
	}
}

// TestForwardedWriteLatency measures writes sent to a PASSIVE node (plain
// HTTP admin API, bearer token, a permission change: no bcrypt on the
// way), which the leader carries out. With UDMGTEST_SERVER it
// measures another build (the previous release) for comparison.
func TestForwardedWriteLatency(t *testing.T) {
	c := ts.NewCluster(t, 3, extraEnv()...)
	active := c.WaitOneActive(30*time.Second, "PASSIVE")
	passive := c.Other(active)
	resp, err := active.Admin().Do("POST", "/api/tokens", nil)
	if err != nil || resp.Status != http.StatusCreated {
		t.Fatalf("token: %v %v", resp, err)
	}
	var tok struct{ Token string }
	resp.Decode(&tok)
	api := passive.Admin().WithToken(tok.Token)
	if !ts.Eventually(10*time.Second, func() bool {
		r, err := api.Do("GET", "/api/users", nil)
		return err == nil && r.Status == http.StatusOK
	}) {
		t.Fatal("the PASSIVE node never accepted the token the ACTIVE made")
	}
	if r, err := api.Do("POST", "/api/users", map[string]any{"username": "lat", "password": "latency-user-pw", "perms": map[string]string{"transfers": "r--"}}); err != nil || r.Status != http.StatusCreated {
		t.Fatalf("create through PASSIVE: %v %v", r, err)
	}
	var took []time.Duration
	for i := range 100 {
		perm := []string{"r--", "rw-"}[i%2]
		start := time.Now()
		r, err := api.Do("PATCH", "/api/users/lat", map[string]any{"perms": map[string]string{"transfers": perm}})
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("forwarded PATCH %d: %v %v", i, r, err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	t.Logf("forwarded write through PASSIVE: median %s p90 %s max %s over %d", took[len(took)/2].Round(10*time.Microsecond),
		took[len(took)*9/10].Round(10*time.Microsecond), took[len(took)-1].Round(10*time.Microsecond), len(took))
}

// TestNodesRemove: an operator removes a stopped node (through any node):
// it leaves the Raft configuration and the node table; an unknown ID is a
// JSON 404.
func TestNodesRemove(t *testing.T) {
	c := ts.NewCluster(t, 3)
	active := c.WaitOneActive(30*time.Second, "PASSIVE")
	var gone, via *ts.Proc
	for _, p := range c.Nodes {
		switch {
		case p == active:
		case gone == nil:
			gone = p
		default:
			via = p
		}
	}
	id := healthcheck(t, gone)["nodeId"]
	gone.Kill()
	r, err := via.Admin().Do("DELETE", "/api/nodes/"+url.PathEscape(id), nil)
	if err != nil || r.Status != http.StatusNoContent {
		t.Fatalf("DELETE /api/nodes/%s through %s: %v %v", id, via.Name, r, err)
	}
	for _, p := range []*ts.Proc{active, via} {
		if !ts.Eventually(10*time.Second, func() bool { v, ok := p.Metric("udmg_raft_voters"); return ok && v == 2 }) {
			v, _ := p.Metric("udmg_raft_voters")
			t.Errorf("%s: %v voters after the removal, want 2", p.Name, v)
		}
	}
	// The license slots are listed from the replicated node table.
	if !ts.Eventually(10*time.Second, func() bool {
		r, err := active.Admin().Do("GET", "/api/license", nil)
		return err == nil && r.Status == http.StatusOK && !strings.Contains(string(r.Body), id)
	}) {
		t.Errorf("the node table still lists %s", id)
	}
	r, err = via.Admin().Do("DELETE", "/api/nodes/nope", nil)
	if err != nil || r.Status != http.StatusNotFound || r.ErrorMessage() == "" {
		t.Errorf("DELETE of an unknown node: %v %v, want a JSON 404", r, err)
	}
	c.WaitOneActive(10*time.Second, "PASSIVE", gone)
}
