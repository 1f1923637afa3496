package vip_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/arp"
	"github.com/pkg/sftp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	ts "github.com/udmg/gateway/testsupport"
	"github.com/udmg/gateway/vip"
)

// lan is the test's own network: a switch namespace with a bridge, one
// namespace per node (eth0 .1, .2, …), a client (.50) and a partner (.60)
// on it, and the test process itself on .254 (to reach the admin APIs).
// The service address is .100. Everything is removed at cleanup, failed
// or not (deleting the namespaces deletes their veth pairs and rules).
type lan struct {
	t       *testing.T
	id      string
	subnet  string // "10.88.N."
	sw      string
	nodes   []string
	client  string
	partner string
}

func (l *lan) ip(host int) string { return fmt.Sprintf("%s%d", l.subnet, host) }
func (l *lan) vip() string        { return l.ip(100) }

func sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newLAN(t *testing.T, nodes int) *lan {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED LOUDLY: the service address process tests need root (network namespaces, iptables)")
	}
	if err := exec.Command("ip", "netns", "list").Run(); err != nil {
		t.Skipf("SKIPPED LOUDLY: `ip netns` is unavailable here: %v", err)
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("SKIPPED LOUDLY: iptables is not installed")
	}
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	l := &lan{t: t, id: id, subnet: fmt.Sprintf("10.88.%d.", b[0]), sw: "vs" + id}
	addNS := func(name string) {
		sh(t, "ip", "netns", "add", name)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	}
	addNS(l.sw)
	sh(t, "ip", "-n", l.sw, "link", "add", "br0", "type", "bridge")
	sh(t, "ip", "-n", l.sw, "link", "set", "br0", "up")
	port := func(ns, short string, host int) {
		peer := short + "-" + id
		sh(t, "ip", "-n", l.sw, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", ns)
		sh(t, "ip", "-n", l.sw, "link", "set", peer, "master", "br0", "up")
		sh(t, "ip", "-n", ns, "addr", "add", l.ip(host)+"/24", "dev", "eth0")
		sh(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	}
	for i := 1; i <= nodes; i++ {
		ns := fmt.Sprintf("vn%s-%d", id, i)
		addNS(ns)
		port(ns, fmt.Sprintf("n%d", i), i)
		l.nodes = append(l.nodes, ns)
	}
	l.client, l.partner = "vc"+id, "vp"+id
	addNS(l.client)
	port(l.client, "c", 50)
	addNS(l.partner)
	port(l.partner, "p", 60)
	// The test process: a veth from the root namespace to the bridge.
	root := "vr" + id
	sh(t, "ip", "link", "add", root, "type", "veth", "peer", "name", "r-"+id, "netns", l.sw)
	t.Cleanup(func() { exec.Command("ip", "link", "del", root).Run() })
	sh(t, "ip", "-n", l.sw, "link", "set", "r-"+id, "master", "br0", "up")
	sh(t, "ip", "addr", "add", l.ip(254)+"/24", "dev", root)
	sh(t, "ip", "link", "set", root, "up")
	return l
}

// inNS runs f on an OS thread switched to namespace ns: sockets f creates
// live in ns (and stay there once the thread switches back).
func inNS[T any](t testing.TB, ns string, f func() (T, error)) (T, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		var zero T
		return zero, err
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		var zero T
		return zero, err
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		var zero T
		return zero, err
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(fmt.Sprintf("back to the test's namespace: %v", err))
		}
	}()
	return f()
}

func handle(t testing.TB, ns string) *netlink.Handle {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	return nl
}

// holds reads whether a node holds the service address: it has it on eth0
// (addr) and answers for it (held): its fence (vip.FenceTable) lets the
// address through, or there is no fence (keepalived). A fenced node keeps
// the address, inert, until the kernel's lifetime drops it.
func holds(nl *netlink.Handle, nft *nftables.Conn, ip string) (held, addr bool, err error) {
	link, err := nl.LinkByName("eth0")
	if err != nil {
		return false, false, err
	}
	addrs, err := nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return false, false, err
	}
	for _, a := range addrs {
		addr = addr || a.IP.String() == ip
	}
	if !addr {
		return false, false, nil
	}
	set, err := nft.GetSetByName(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: vip.FenceTable}, "lease")
	if errors.Is(err, unix.ENOENT) {
		return true, true, nil
	}
	if err != nil {
		return false, false, err
	}
	elems, err := nft.GetSetElements(set)
	if err != nil {
		return false, false, err
	}
	for _, e := range elems {
		held = held || net.IP(e.Key).String() == ip && e.Expires > 0
	}
	return held, true, nil
}

// sample is one reading of one node's addresses, taken between t0 and t1.
type sample struct {
	t0, t1 time.Time
	held   bool // answering for the address
	addr   bool // with the address on its interface, answering or not
}

// addrProber reads, every 10 ms, in every node's namespace, whether it
// holds the service address.
type addrProber struct {
	mu      sync.Mutex
	samples [][]sample
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startAddrProber(t *testing.T, l *lan) *addrProber {
	p := &addrProber{samples: make([][]sample, len(l.nodes)), stop: make(chan struct{})}
	for i, ns := range l.nodes {
		nl := handle(t, ns)
		h, err := netns.GetFromName(ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		nft, err := nftables.New(nftables.WithNetNSFd(int(h)))
		if err != nil {
			t.Fatal(err)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				t0 := time.Now()
				held, addr, err := holds(nl, nft, l.vip())
				if err == nil {
					p.mu.Lock()
					p.samples[i] = append(p.samples[i], sample{t0, time.Now(), held, addr})
					p.mu.Unlock()
				}
				select {
				case <-p.stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	t.Cleanup(p.Stop)
	return p
}

func (p *addrProber) Stop() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

// holder is the node seen holding the address last, -1 for none.
func (p *addrProber) holder() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := -1
	for i, s := range p.samples {
		if len(s) > 0 && s[len(s)-1].held {
			h = i
		}
	}
	return h
}

// overlaps lists pairs of readings of two nodes both holding the address
// at instants that may have been the same.
func (p *addrProber) overlaps() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for i := range p.samples {
		for j := i + 1; j < len(p.samples); j++ {
			for _, a := range p.samples[i] {
				if !a.held {
					continue
				}
				for _, b := range p.samples[j] {
					if b.held && a.t0.Before(b.t1) && b.t0.Before(a.t1) {
						out = append(out, fmt.Sprintf("node%d and node%d both held it around %s", i+1, j+1, a.t0.Format("15:04:05.000")))
					}
				}
			}
		}
	}
	return out
}

// inert counts the readings of a node that had the address without
// answering for it (fenced) while another node answered for it: what a
// reader of addresses alone would take for two holders.
func (p *addrProber) inert() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for i := range p.samples {
		for j := range p.samples {
			if i == j {
				continue
			}
			for _, a := range p.samples[i] {
				if !a.addr || a.held {
					continue
				}
				for _, b := range p.samples[j] {
					if b.held && a.t0.Before(b.t1) && b.t0.Before(a.t1) {
						n++
						break
					}
				}
			}
		}
	}
	return n
}

// arpResponders asks, from the client's namespace, who has ip, and lists
// the MACs that answer within window (one ARP request, every reply read).
func arpResponders(t *testing.T, l *lan, ip string, window time.Duration) []string {
	t.Helper()
	macs, err := inNS(t, l.client, func() ([]string, error) {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return nil, err
		}
		c, err := arp.Dial(ifi)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		target := netip.MustParseAddr(ip)
		if err := c.Request(target); err != nil {
			return nil, err
		}
		var out []string
		c.SetReadDeadline(time.Now().Add(window))
		for {
			pkt, _, err := c.Read()
			if err != nil {
				return out, nil // the window is over
			}
			if pkt.Operation == arp.OperationReply && pkt.SenderIP == target && !slices.Contains(out, pkt.SenderHardwareAddr.String()) {
				out = append(out, pkt.SenderHardwareAddr.String())
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return macs
}

func (p *addrProber) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.samples {
		n += len(s)
	}
	return n
}

// gw is one udmg-server process in its node namespace.
type gw struct {
	name, ns, ip string
	env          []string
	log          string
	cmd          *exec.Cmd
	done         chan struct{}
}

func (g *gw) start(t testing.TB, bin string) {
	t.Helper()
	f, err := os.OpenFile(g.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	// ip netns exec execs the server itself: the pid is the server's.
	cmd := exec.Command("ip", "netns", "exec", g.ns, bin)
	cmd.Env = append(os.Environ(), g.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.cmd, g.done = cmd, make(chan struct{})
	done := g.done
	go func() { cmd.Wait(); f.Close(); close(done) }()
}

func (g *gw) signal(sig syscall.Signal) {
	if g.cmd != nil {
		g.cmd.Process.Signal(sig)
	}
}

func (g *gw) wait(d time.Duration) bool {
	select {
	case <-g.done:
		return true
	case <-time.After(d):
		return false
	}
}

func (g *gw) api() *ts.APIClient {
	return &ts.APIClient{Base: "http://" + g.ip + ":8080", User: "admin", Password: ts.AdminPassword, HTTP: &http.Client{Timeout: 5 * time.Second}}
}

func (g *gw) active() bool {
	resp, err := (&http.Client{Timeout: 300 * time.Millisecond}).Get("http://" + g.ip + ":8080/ping")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == 200 && strings.TrimSpace(string(b)) == "ACTIVE"
}

func (g *gw) tail(n int) string {
	b, _ := os.ReadFile(g.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func startGateways(t *testing.T, l *lan, extra ...string) []*gw {
	t.Helper()
	bin := ts.ServerBinary(t)
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	license := filepath.Join(dir, "license.json")
	ts.WriteLicense(t, license, len(l.nodes))
	token := ts.NewJoinToken()
	var join []string
	for i := range l.nodes {
		join = append(join, l.ip(i+1)+":7946")
	}
	var gws []*gw
	for i, ns := range l.nodes {
		ip := l.ip(i + 1)
		g := &gw{name: fmt.Sprintf("node%d", i+1), ns: ns, ip: ip, log: filepath.Join(dir, fmt.Sprintf("node%d.log", i+1))}
		g.env = append([]string{
			"UDMG_GLOBAL_NODEID=" + g.name,
			"UDMG_ADMIN_HOST=" + ip,
			"UDMG_ADMIN_INITIALPASSWORD=" + ts.AdminPassword,
			"UDMG_PATHS_GATEWAYHOME=" + home,
			"UDMG_CLUSTER_DATADIR=" + filepath.Join(dir, g.name),
			"UDMG_CLUSTER_RAFTADDRESS=" + ip + ":8300",
			"UDMG_CLUSTER_GOSSIPADDRESS=" + ip + ":7946",
			"UDMG_CLUSTER_ADVERTISEHOST=" + ip,
			"UDMG_CLUSTER_JOINTOKEN=" + token,
			"UDMG_LICENSE_FILE=" + license,
			// The listeners bind the service address itself: it is
			// added before they open.
			"UDMG_LISTENERS_HOST=" + l.vip(),
			"UDMG_VIP_ADDRESS=" + l.vip() + "/24",
			"UDMG_VIP_INTERFACE=eth0",
		}, extra...)
		if len(l.nodes) > 1 {
			g.env = append(g.env, "UDMG_CLUSTER_JOIN="+strings.Join(join, ","), fmt.Sprintf("UDMG_CLUSTER_BOOTSTRAPEXPECT=%d", len(l.nodes)))
		}
		gws = append(gws, g)
	}
	t.Cleanup(func() {
		for _, g := range gws {
			g.signal(syscall.SIGCONT)
			g.signal(syscall.SIGKILL)
			g.wait(10 * time.Second)
		}
		if t.Failed() {
			for _, g := range gws {
				t.Logf("---- %s log (last 200 lines) ----\n%s", g.name, g.tail(200))
			}
		}
	})
	for _, g := range gws {
		g.start(t, bin)
	}
	return gws
}

// waitActive waits for one node other than skip to answer /ping ACTIVE
// and hold the address.
func waitActive(t *testing.T, gws []*gw, p *addrProber, timeout time.Duration, skip int) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for i, g := range gws {
			if i != skip && g.active() && p.holder() == i {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no node (other than %d) ACTIVE and holding the address within %s; holder %d", skip+1, timeout, p.holder()+1)
	return -1
}

// clientMAC is the client's ARP entry for the service address.
func clientMAC(t *testing.T, nl *netlink.Handle, ip string) string {
	t.Helper()
	neigh, err := nl.NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neigh {
		if n.IP.String() == ip {
			return n.HardwareAddr.String()
		}
	}
	return ""
}

func nodeMAC(t *testing.T, ns string) string {
	t.Helper()
	link, err := handle(t, ns).LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return link.Attrs().HardwareAddr.String()
}

// clientSFTP connects from the client namespace to the service address
// and uploads one small file: an SFTP session reaches whoever holds it.
func clientSFTP(t *testing.T, l *lan, name string) error {
	return clientUpload(t, l, name, []byte("through the service address\n"))
}

// clientUpload uploads data as name through the service address; nil
// means the server acknowledged the close: the upload is acknowledged.
func clientUpload(t testing.TB, l *lan, name string, data []byte) error {
	conn, err := inNS(t, l.client, func() (net.Conn, error) {
		return net.DialTimeout("tcp", net.JoinHostPort(l.vip(), "2222"), time.Second)
	})
	if err != nil {
		return err
	}
	cfg := &ssh.ClientConfig{User: "admin", Auth: []ssh.AuthMethod{ssh.Password(ts.AdminPassword)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 3 * time.Second}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(conn, l.vip(), cfg)
	if err != nil {
		conn.Close()
		return err
	}
	sc := ssh.NewClient(c, chans, reqs)
	defer sc.Close()
	s, err := sftp.NewClient(sc)
	if err != nil {
		return err
	}
	defer s.Close()
	f, err := s.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// vipUploads uploads files of random content through the service address,
// one after another, from the client namespace, until stopped, and keeps
// the acknowledged ones.
type vipUploads struct {
	stop, done chan struct{}
	mu         sync.Mutex
	acked      map[string]string // name → sha256
	failed     int
}

func startVIPUploads(t *testing.T, l *lan) *vipUploads {
	u := &vipUploads{stop: make(chan struct{}), done: make(chan struct{}), acked: map[string]string{}}
	go func() {
		defer close(u.done)
		for i := 0; ; i++ {
			select {
			case <-u.stop:
				return
			default:
			}
			data := make([]byte, 1024+i%64<<10)
			rand.Read(data)
			name := fmt.Sprintf("during-%05d.bin", i)
			err := clientUpload(t, l, name, data)
			u.mu.Lock()
			if err == nil {
				u.acked[name] = ts.SHA256Hex(data)
			} else {
				u.failed++
			}
			u.mu.Unlock()
			if err != nil {
				// A client's pause before it dials again.
				select {
				case <-u.stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}()
	t.Cleanup(u.end)
	return u
}

// end stops the uploads (once) and waits for the one in progress.
func (u *vipUploads) end() {
	select {
	case <-u.stop:
	default:
		close(u.stop)
	}
	<-u.done
}

// partnerSFTP is an SFTP server listening in the partner namespace that
// writes under dir; its firewall (iptables in that namespace) lets only
// the service address reach it.
type partnerSFTP struct {
	addr, hostKey, clientKey, dir string
	ln                            net.Listener
	wg                            sync.WaitGroup
	mu                            sync.Mutex
	from                          []string // remote addresses of accepted logins
}

func startPartner(t *testing.T, l *lan) *partnerSFTP {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, _ := ssh.NewSignerFromKey(hostPriv)
	clientPub, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	clientSSHPub, _ := ssh.NewPublicKey(clientPub)
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	p := &partnerSFTP{addr: net.JoinHostPort(l.ip(60), "22"), dir: t.TempDir(),
		hostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostSigner.PublicKey()))), clientKey: string(pem.EncodeToMemory(block))}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) != string(clientSSHPub.Marshal()) {
			return nil, fmt.Errorf("unknown key")
		}
		p.mu.Lock()
		p.from = append(p.from, c.RemoteAddr().String())
		p.mu.Unlock()
		return nil, nil
	}}
	cfg.AddHostKey(hostSigner)
	p.ln, err = inNS(t, l.partner, func() (net.Listener, error) { return net.Listen("tcp", p.addr) })
	if err != nil {
		t.Fatal(err)
	}
	sh(t, "ip", "netns", "exec", l.partner, "iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-s", l.vip(), "-j", "ACCEPT")
	sh(t, "ip", "netns", "exec", l.partner, "iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "REJECT", "--reject-with", "tcp-reset")
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			conn, err := p.ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer conn.Close()
				_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for nc := range chans {
					if nc.ChannelType() != "session" {
						nc.Reject(ssh.UnknownChannelType, "")
						continue
					}
					ch, creqs, err := nc.Accept()
					if err != nil {
						return
					}
					go func() {
						for r := range creqs {
							r.Reply(r.Type == "subsystem" && string(r.Payload[4:]) == "sftp", nil)
						}
					}()
					srv, err := sftp.NewServer(ch)
					if err != nil {
						return
					}
					srv.Serve()
					srv.Close()
				}
			}()
		}
	}()
	t.Cleanup(func() { p.ln.Close(); p.wg.Wait() })
	return p
}

// push sends GatewayHome/out/name to the partner and waits for the end.
func push(t *testing.T, api *ts.APIClient, home, name string) ts.Transfer {
	t.Helper()
	ts.WriteRandomFile(t, filepath.Join(home, "out", name), 8<<10)
	var tr ts.Transfer
	if err := api.Must(t, 201, "POST", "/api/transfers", map[string]any{"rule": "push", "partner": "remote", "account": "gw", "file": name}).Decode(&tr); err != nil {
		t.Fatal(err)
	}
	return api.WaitTransfer(t, tr.ID, time.Minute, "DONE or ERROR", func(tr ts.Transfer) bool { return tr.Status == "DONE" || tr.Status == "ERROR" })
}

func addPartner(t *testing.T, api *ts.APIClient, p *partnerSFTP) {
	t.Helper()
	api.Must(t, 201, "POST", "/api/partners", map[string]any{"name": "remote", "protocol": "sftp", "address": p.addr, "hostKey": p.hostKey})
	api.Must(t, 201, "POST", "/api/partners/remote/accounts", map[string]any{"login": "gw", "privateKey": p.clientKey})
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "push", "direction": "send", "path": p.dir, "localDir": "out"})
}

func homeOf(g *gw) string {
	for _, kv := range g.env {
		if v, ok := strings.CutPrefix(kv, "UDMG_PATHS_GATEWAYHOME="); ok {
			return v
		}
	}
	return ""
}

// TestServiceAddressFollowsTheLease: three nodes in their own network
// namespaces; the ACTIVE one holds the service address, and across kill
// -9, SIGSTOP past Deadline, a partition from the other nodes, that
// partition with a SIGTERM and restart of the leader waiting out the cut
// node's lease, and a SIGTERM handover, no two nodes ever hold it at once (a
// prober reads every node's addresses every 10 ms); the client's ARP entry
// moves to the new ACTIVE right after takeover, an SFTP client reconnecting
// to the address reaches it, uploads through the address during all of it
// are intact once acknowledged, and transfers to a partner that accepts
// only the service address succeed before and after failover.
func TestServiceAddressFollowsTheLease(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three real nodes")
	}
	l := newLAN(t, 3)
	partner := startPartner(t, l)
	prober := startAddrProber(t, l)
	gws := startGateways(t, l, "UDMG_VIP_SOURCEADDRESS=true")
	bin := ts.ServerBinary(t)
	home := homeOf(gws[0])
	client := handle(t, l.client)

	act := waitActive(t, gws, prober, 60*time.Second, -1)
	if err := clientSFTP(t, l, "first.txt"); err != nil {
		t.Fatalf("SFTP through the service address to %s: %v", gws[act].name, err)
	}
	if got, want := clientMAC(t, client, l.vip()), nodeMAC(t, gws[act].ns); got != want {
		t.Errorf("client's ARP entry %s, want %s's MAC %s", got, gws[act].name, want)
	}
	addPartner(t, gws[act].api(), partner)
	if tr := push(t, gws[act].api(), home, "before.bin"); tr.Status != "DONE" {
		t.Fatalf("push from the service address before failover: %s %s", tr.ErrorCode, tr.ErrorDetails)
	}

	// Uploads through the address during every fault below: each one is
	// either acknowledged and then intact, or failed at the client.
	uploads := startVIPUploads(t, l)
	partition := func(g *gw) {
		for i := range gws {
			if gws[i] != g {
				sh(t, "ip", "netns", "exec", g.ns, "iptables", "-w", "-A", "INPUT", "-s", gws[i].ip, "-j", "DROP")
				sh(t, "ip", "netns", "exec", g.ns, "iptables", "-w", "-A", "OUTPUT", "-d", gws[i].ip, "-j", "DROP")
			}
		}
	}
	unpartition := func(g *gw) { sh(t, "ip", "netns", "exec", g.ns, "iptables", "-w", "-F") }
	// The combined fault of the lease-safety work: the ACTIVE cut off, and
	// the leader that waits out its lease stopped with SIGTERM during the
	// wait, then started again (three nodes: the two left need it back for
	// a quorum); whoever takes the lease next must wait still.
	var termed *gw
	cutThenTermWaiting := func(g *gw) {
		from := map[*gw]int{}
		for _, o := range gws {
			from[o] = len(o.tail(1 << 20))
		}
		partition(g)
		termed = nil
		if !ts.Eventually(30*time.Second, func() bool {
			for _, o := range gws {
				if log := o.tail(1 << 20); o != g && len(log) > from[o] && strings.Contains(log[from[o]:], "lease acquired") &&
					!strings.Contains(log[from[o]:], "wait=0s") {
					termed = o
					return true
				}
			}
			return false
		}) {
			t.Fatal("no leader took the lease, with a wait, after the ACTIVE was cut off")
		}
		termed.signal(syscall.SIGTERM)
		termed.wait(20 * time.Second)
		termed.start(t, bin)
	}
	faults := []struct {
		name   string
		inject func(g *gw)
		heal   func(g *gw)
	}{
		{"kill -9", func(g *gw) { g.signal(syscall.SIGKILL); g.wait(10 * time.Second) }, func(g *gw) { g.start(t, bin) }},
		{"SIGSTOP past Deadline", func(g *gw) { g.signal(syscall.SIGSTOP) }, func(g *gw) { g.signal(syscall.SIGCONT) }},
		{"partition from the other nodes", partition, unpartition},
		{"partition, then SIGTERM of the leader waiting out its lease", cutThenTermWaiting, unpartition},
		{"SIGTERM handover", func(g *gw) { g.signal(syscall.SIGTERM); g.wait(20 * time.Second) }, func(g *gw) { g.start(t, bin) }},
	}
	for i, f := range faults {
		old := gws[act]
		injected := time.Now()
		f.inject(old)
		next := waitActive(t, gws, prober, 60*time.Second, act)
		held := time.Now()
		// The client learns the new MAC from the gratuitous ARP.
		want := nodeMAC(t, gws[next].ns)
		var got string
		if !ts.Eventually(time.Second, func() bool { got = clientMAC(t, client, l.vip()); return got == want }) {
			t.Errorf("%s: client's ARP entry %s one second after takeover, want %s's MAC %s", f.name, got, gws[next].name, want)
		}
		// The old holder may still have the address (until its kernel
		// lifetime ends), fenced: only the new one answers for it.
		if macs := arpResponders(t, l, l.vip(), 200*time.Millisecond); len(macs) != 1 || macs[0] != want {
			t.Errorf("%s: ARP replies for the service address right after takeover from %v, want %s's %s alone", f.name, macs, gws[next].name, want)
		}
		var banner time.Time
		if !ts.Eventually(10*time.Second, func() bool {
			err := clientSFTP(t, l, fmt.Sprintf("after-%d.txt", i))
			banner = time.Now()
			return err == nil
		}) {
			t.Errorf("%s: the SFTP client reconnecting to the service address does not reach %s", f.name, gws[next].name)
		}
		t.Logf("%s of %s: %s holds the address after %v, client's SFTP upload through it after %v",
			f.name, old.name, gws[next].name, held.Sub(injected).Round(time.Millisecond), banner.Sub(injected).Round(time.Millisecond))
		if tr := push(t, gws[next].api(), home, fmt.Sprintf("after-%d.bin", i)); tr.Status != "DONE" {
			t.Errorf("%s: push from the service address after failover: %s %s", f.name, tr.ErrorCode, tr.ErrorDetails)
		}
		f.heal(old)
		act = next
	}
	// The healed nodes rejoin as PASSIVE without taking the address.
	time.Sleep(3 * time.Second) // a window for a wrongly re-added address to show up; the prober checks it
	prober.Stop()
	uploads.end()
	lost := 0
	for name, sum := range uploads.acked {
		b, err := os.ReadFile(filepath.Join(home, "admin", name))
		if err != nil || ts.SHA256Hex(b) != sum {
			lost++
			t.Errorf("upload %s acknowledged through the service address, then lost or changed: %v", name, err)
		}
	}
	if len(uploads.acked) < len(faults) {
		t.Errorf("only %d uploads acknowledged through the service address during %d faults", len(uploads.acked), len(faults))
	}
	t.Logf("uploads through the service address during the faults: %d acknowledged, %d lost or changed, %d failed at the client", len(uploads.acked), lost, uploads.failed)
	if o := prober.overlaps(); len(o) > 0 {
		t.Errorf("two holders of the service address at once (%d readings), e.g. %s", len(o), o[0])
	}
	partner.mu.Lock()
	from := slices.Clone(partner.from)
	partner.mu.Unlock()
	for _, a := range from {
		if host, _, _ := net.SplitHostPort(a); host != l.vip() {
			t.Errorf("the partner saw a login from %s, not the service address", a)
		}
	}
	t.Logf("%d address readings (%d of a fenced node still with the address while another held it), %d partner logins, all from %s",
		prober.count(), prober.inert(), len(from), l.vip())
}

// TestWithoutSourceAddress: with SourceAddress off, a partner that accepts
// only the service address refuses the transfer, and the transfer says so.
func TestWithoutSourceAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real node")
	}
	l := newLAN(t, 1)
	partner := startPartner(t, l)
	prober := startAddrProber(t, l)
	gws := startGateways(t, l)
	act := waitActive(t, gws, prober, 60*time.Second, -1)
	addPartner(t, gws[act].api(), partner)
	tr := push(t, gws[act].api(), homeOf(gws[0]), "refused.bin")
	if tr.Status != "ERROR" || !strings.Contains(tr.ErrorDetails, "connection refused") {
		t.Fatalf("push without SourceAddress to a partner accepting only %s: %s %s %s, want ERROR naming the refused connection", l.vip(), tr.Status, tr.ErrorCode, tr.ErrorDetails)
	}
	t.Logf("without SourceAddress: %s %s", tr.ErrorCode, tr.ErrorDetails)
}

// TestFTPFromServiceAddress: FTP and FTPS partners (another gateway in the
// partner namespace, its firewall accepting connections only from the
// service address and the test) get pushed files over control and passive
// data connections that all leave from the service address.
func TestFTPFromServiceAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two real nodes")
	}
	l := newLAN(t, 1)
	prober := startAddrProber(t, l)
	gws := startGateways(t, l, "UDMG_VIP_SOURCEADDRESS=true")
	home := homeOf(gws[0])

	dir := t.TempDir()
	pgw := &gw{name: "partner", ns: l.partner, ip: l.ip(60), log: filepath.Join(dir, "partner.log"), env: []string{
		"UDMG_GLOBAL_NODEID=partner",
		"UDMG_ADMIN_HOST=" + l.ip(60),
		"UDMG_ADMIN_INITIALPASSWORD=" + ts.AdminPassword,
		"UDMG_PATHS_GATEWAYHOME=" + filepath.Join(dir, "home"),
		"UDMG_CLUSTER_DATADIR=" + filepath.Join(dir, "node"),
		"UDMG_LISTENERS_HOST=" + l.ip(60),
	}}
	pgw.start(t, ts.ServerBinary(t))
	t.Cleanup(func() {
		pgw.signal(syscall.SIGKILL)
		pgw.wait(10 * time.Second)
		if t.Failed() {
			t.Logf("---- partner log ----\n%s", pgw.tail(30))
		}
	})
	if !ts.Eventually(60*time.Second, pgw.active) {
		t.Fatal("the partner gateway is not ACTIVE")
	}
	papi := pgw.api()
	papi.Must(t, 201, "POST", "/api/servers", map[string]any{"name": "ftp-p", "protocol": "ftp", "port": 2100, "root": "p",
		"passiveMin": 31000, "passiveMax": 31009, "publicHost": l.ip(60), "tls": true})
	papi.Must(t, 201, "POST", "/api/servers/ftp-p/accounts", map[string]any{"login": "bob", "password": "bob-secret-1"})
	if err := os.MkdirAll(filepath.Join(dir, "home", "p", "bob", "drop"), 0o755); err != nil {
		t.Fatal(err)
	}
	var srv struct {
		TLSCert string `json:"tlsCert"`
	}
	if err := papi.Must(t, 200, "GET", "/api/servers/ftp-p", nil).Decode(&srv); err != nil || srv.TLSCert == "" {
		t.Fatalf("partner server has no certificate: %v", err)
	}
	// Only the service address (and the test, for the partner's API) may
	// connect: the node's own address is refused at once.
	for _, rule := range [][]string{
		{"-A", "INPUT", "-p", "tcp", "-s", l.vip(), "-j", "ACCEPT"},
		{"-A", "INPUT", "-p", "tcp", "-s", l.ip(254), "-j", "ACCEPT"},
		{"-A", "INPUT", "-p", "tcp", "--syn", "-j", "REJECT", "--reject-with", "tcp-reset"},
	} {
		sh(t, append([]string{"ip", "netns", "exec", l.partner, "iptables", "-w"}, rule...)...)
	}

	act := waitActive(t, gws, prober, 60*time.Second, -1)
	api := gws[act].api()
	for _, p := range []map[string]any{
		{"name": "ftp-remote", "protocol": "ftp", "address": l.ip(60) + ":2100"},
		{"name": "ftps-remote", "protocol": "ftp", "address": l.ip(60) + ":2100", "tls": true, "tlsCert": srv.TLSCert},
	} {
		api.Must(t, 201, "POST", "/api/partners", p)
		api.Must(t, 201, "POST", "/api/partners/"+p["name"].(string)+"/accounts", map[string]any{"login": "bob", "password": "bob-secret-1"})
	}
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "push", "direction": "send", "path": "/drop", "localDir": "out"})
	for _, partner := range []string{"ftp-remote", "ftps-remote"} {
		name := partner + ".bin"
		sum := ts.WriteRandomFile(t, filepath.Join(home, "out", name), 1<<20)
		var tr ts.Transfer
		if err := api.Must(t, 201, "POST", "/api/transfers", map[string]any{"rule": "push", "partner": partner, "account": "bob", "file": name, "maxAttempts": 1}).Decode(&tr); err != nil {
			t.Fatal(err)
		}
		tr = api.WaitTransfer(t, tr.ID, time.Minute, "DONE or ERROR", func(tr ts.Transfer) bool { return tr.Status == "DONE" || tr.Status == "ERROR" })
		if tr.Status != "DONE" {
			t.Fatalf("push to %s from the service address: %s %s", partner, tr.ErrorCode, tr.ErrorDetails)
		}
		if got := ts.FileSHA256(t, filepath.Join(dir, "home", "p", "bob", "drop", name)); got != sum {
			t.Fatalf("%s's copy differs", partner)
		}
	}
}
