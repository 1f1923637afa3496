package cluster_test

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"

	"io"
	"math/big"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/crypto/bcrypt"

	"github.com/udmg/gateway/cluster"
	ts "github.com/udmg/gateway/testsupport"
)

// metric reads one unlabelled gauge from a node's /metrics.
func metric(t *testing.T, p *ts.Proc, name string) (float64, bool) {
	t.Helper()
	resp, err := p.Admin().Do("GET", "/metrics", nil)
	if err != nil || resp.Status != http.StatusOK {
		return 0, false
	}
	sc := bufio.NewScanner(strings.NewReader(string(resp.Body)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

func terms(t *testing.T, c *ts.Cluster) []float64 {
	t.Helper()
	var out []float64
	for _, p := range c.Nodes {
		v, ok := metric(t, p, "udmg_raft_term")
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
				last, _ := metric(t, p, "udmg_raft_last_index")
				term, _ := metric(t, p, "udmg_raft_term")
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				r.stream.Listener = ln
				trans := raft.NewNetworkTransport(r.stream, 1, 2*time.Second, io.Discard)
				req := raft.AppendEntriesRequest{
					RPCHeader: raft.RPCHeader{ID: []byte("rogue"), Addr: []byte(ln.Addr().String())},
					Term:      uint64(term) + 50, PrevLogEntry: uint64(last), PrevLogTerm: uint64(term),
					Entries:           []*raft.Log{{Index: uint64(last) + 1, Term: uint64(term) + 50, Type: raft.LogCommand, Data: entry}},
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
				if !ts.Eventually(5*time.Second, func() bool { return strings.Contains(p.Log(), r.reason) }) {
					t.Errorf("%s logged no refusal naming %q; log tail:\n%s", p.Name, r.reason, p.LogTail(10))
				}
				if n := refusalLines(p, r.reason); n > 2 {
					t.Errorf("%s logged %d refusal lines for 5 attempts from one address, want at most 2", p.Name, n)
				}
			}
		})
	}
	after := terms(t, c)
	for i := range before {
		if after[i] != before[i] {
			t.Errorf("%s: term moved from %v to %v", c.Nodes[i].Name, before[i], after[i])
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
}

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
		if v, ok := metric(t, p, "udmg_raft_voters"); !ok || v != 3 {
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
		if v, ok := metric(t, p, "udmg_raft_voters"); !ok || v != 3 {
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
