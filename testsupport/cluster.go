// Package testsupport starts real gateway processes for tests: it builds
// udmg-server once, runs nodes on their own loopback addresses
// (127.0.X.1, 127.0.X.2, …, with the product's standard ports), and offers
// the probes the tests and measurements share.
package testsupport

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/udmg/gateway/licensing"
)

// AdminPassword is the initial administrator password of test clusters.
const AdminPassword = "test-admin-secret"

// Standard ports of the product; each node has its own address.
const (
	AdminPort  = 8080
	RaftPort   = 8300
	GossipPort = 7946
	SFTPPort   = 2222
	FTPPort    = 2121
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// ServerBinary builds cmd/udmg-server once per test binary and returns its path.
func ServerBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("UDMGTEST_SERVER"); bin != "" {
		// A prebuilt binary (another revision, say, to show that a test
		// fails without a fix); it must trust the test vendor key.
		return bin
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "udmg-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "udmg-server")
		buildErr = buildServer(moduleRoot(), buildPath)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// ReleaseBinary builds udmg-server as it was at ref in this repository's
// history (an earlier release, for upgrade tests), trusting the test vendor
// key, with this tree's build flags extra added. It skips the test, loudly,
// when the history does not hold ref (a shallow clone).
func ReleaseBinary(t testing.TB, ref string, ldflags ...string) string {
	t.Helper()
	root := moduleRoot()
	if out, err := exec.Command("git", "-C", root, "cat-file", "-e", ref+"^{commit}").CombinedOutput(); err != nil {
		t.Skipf("SKIPPED LOUDLY: release %s is not in this clone's history (a shallow clone?): %v %s", ref, err, out)
	}
	src := filepath.Join(t.TempDir(), "src-"+ref)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", root, ref, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", ref, err, out)
	}
	bin := filepath.Join(t.TempDir(), "udmg-server-"+ref)
	if err := buildServer(src, bin, ldflags...); err != nil {
		t.Fatalf("release %s: %v", ref, err)
	}
	return bin
}

// BuildServer builds this tree's udmg-server, trusting the test vendor
// key, with more -ldflags (e.g. -X github.com/udmg/gateway/fsm.testNextVersion=3).
func BuildServer(t testing.TB, ldflags ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "udmg-server")
	if err := buildServer(moduleRoot(), bin, ldflags...); err != nil {
		t.Fatal(err)
	}
	return bin
}

// buildServer builds the udmg-server of the source tree src into bin,
// trusting the test vendor key.
func buildServer(src, bin string, ldflags ...string) error {
	flags := append([]string{"-X github.com/udmg/gateway/licensing.vendorKey=" + licensing.EncodePublicKey(VendorPublic())}, ldflags...)
	cmd := exec.Command("go", "build", "-o", bin, "-ldflags", strings.Join(flags, " "), "./cmd/udmg-server")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build in %s: %v\n%s", src, err, out)
	}
	return nil
}

// claimSubnet picks a free 127.0.X. for a cluster: X is locked (flock on
// a file in the temp directory, held until the test ends) against the other
// test processes of this machine, and its first addresses' admin port is
// checked free against everything else.
func claimSubnet(t testing.TB) string {
	t.Helper()
	for range 500 {
		x := 10 + rand.IntN(240)
		f, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("udmg-subnet-%d.lock", x)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		free := true
		for i := 1; i <= 3 && free; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.%d.%d:8080", x, i))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if !free {
			f.Close()
			continue
		}
		t.Cleanup(func() { f.Close() })
		return fmt.Sprintf("127.0.%d.", x)
	}
	t.Fatal("no free 127.0.X. subnet for a test cluster")
	return ""
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// testVendorSeed makes the test vendor key; test binaries trust it instead
// of the real vendor's, so tests can sign their own licenses.
var testVendorSeed = []byte("udmg-test-vendor-key-not-secret!")

// VendorPublic is the public half of the test vendor key built into test binaries.
func VendorPublic() ed25519.PublicKey {
	return ed25519.NewKeyFromSeed(testVendorSeed).Public().(ed25519.PublicKey)
}

// WriteLicense signs a license for nodes nodes with the test vendor key
// and writes it to path.
func WriteLicense(t testing.TB, path string, nodes int) {
	t.Helper()
	now := time.Now()
	data, err := licensing.Sign(licensing.License{ID: "test", Licensee: "udmg tests", Nodes: nodes,
		Issued: now.Add(-time.Hour), Expires: now.Add(24 * time.Hour)}, ed25519.NewKeyFromSeed(testVendorSeed))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Cluster is a set of node processes sharing one GatewayHome.
type Cluster struct {
	t     testing.TB
	Dir   string
	Home  string
	Nodes []*Proc
	// HomeFS is GatewayHome's own file system (Options.LoopHome), else nil.
	HomeFS *LoopFS
	// Token is the cluster's [cluster] JoinToken, random per cluster.
	Token string
}

// NewJoinToken is a fresh random join token, as udmgctl cluster token
// prints.
func NewJoinToken() string {
	b := make([]byte, 32)
	crand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Proc is one udmg-server process and what it needs to be restarted.
type Proc struct {
	Name    string
	IP      string
	DataDir string
	LogPath string
	// UID is the user the node runs as (Options.UIDs); 0 means as the test.
	UID int
	// DataFS is the DataDir's own file system (Options.LoopDataDirs), else nil.
	DataFS *LoopFS
	env    []string
	bin    string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// NewCluster starts n nodes that bootstrap one cluster together, each with
// a license for n nodes. extraEnv is added to every node's environment
// (UDMG_* overrides; UDMG_LICENSE_FILE= runs them on the evaluation).
func NewCluster(t testing.TB, n int, extraEnv ...string) *Cluster {
	t.Helper()
	return NewClusterWith(t, n, Options{Env: extraEnv})
}

// NewClusterWith is NewCluster with fault-injection options: per-node
// settings, a uid per node, DataDirs and GatewayHome on their own loop
// file systems. Cleanup thaws, kills, then unmounts.
func NewClusterWith(t testing.TB, n int, o Options) *Cluster {
	t.Helper()
	extraEnv := o.Env
	bin := o.Binary
	if bin == "" {
		bin = ServerBinary(t)
	}
	// Kept after a failure, for the node logs and raft state.
	dir, err := os.MkdirTemp(o.Dir, "udmg-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, Dir: dir, Home: filepath.Join(dir, "home"), Token: NewJoinToken()}
	subnet := claimSubnet(t)
	license := filepath.Join(dir, "license.json")
	WriteLicense(t, license, cmp.Or(o.LicenseNodes, n))
	var join []string
	for i := 1; i <= n; i++ {
		join = append(join, fmt.Sprintf("%s%d:%d", subnet, i, GossipPort))
	}
	for i := 1; i <= n; i++ {
		ip := fmt.Sprintf("%s%d", subnet, i)
		p := &Proc{
			Name:    fmt.Sprintf("node%d", i),
			IP:      ip,
			DataDir: filepath.Join(dir, fmt.Sprintf("node%d", i)),
			LogPath: filepath.Join(dir, fmt.Sprintf("node%d.log", i)),
			bin:     bin,
		}
		p.env = append([]string{
			"UDMG_ADMIN_HOST=" + ip,
			"UDMG_ADMIN_INITIALPASSWORD=" + AdminPassword,
			"UDMG_PATHS_GATEWAYHOME=" + c.Home,
			"UDMG_CLUSTER_DATADIR=" + p.DataDir,
			fmt.Sprintf("UDMG_CLUSTER_RAFTADDRESS=%s:%d", ip, RaftPort),
			fmt.Sprintf("UDMG_CLUSTER_GOSSIPADDRESS=%s:%d", ip, GossipPort),
			"UDMG_CLUSTER_ADVERTISEHOST=" + ip,
			"UDMG_LISTENERS_HOST=" + ip,
			"UDMG_LICENSE_FILE=" + license,
			"UDMG_CLUSTER_JOINTOKEN=" + c.Token,
		}, extraEnv...)
		if n > 1 {
			p.env = append(p.env, "UDMG_CLUSTER_JOIN="+strings.Join(join, ","), fmt.Sprintf("UDMG_CLUSTER_BOOTSTRAPEXPECT=%d", n))
		}
		c.Nodes = append(c.Nodes, p)
	}
	t.Cleanup(func() {
		c.thawAll()
		for _, p := range c.Nodes {
			p.Signal(syscall.SIGCONT)
			p.Kill()
		}
		for _, err := range c.unmountAll() {
			t.Error(err)
		}
		if t.Failed() {
			for _, p := range c.Nodes {
				t.Logf("---- %s log (last 40 lines) ----\n%s", p.Name, p.LogTail(40))
			}
			t.Logf("node logs and data kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	if err := c.prepare(o); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Nodes {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// SetEnv adds UDMG_* settings for the process's next Start (a later
// setting of the same variable wins).
func (p *Proc) SetEnv(kv ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.env = append(p.env, kv...)
}

// UseBinary runs the process's next Start with another udmg-server binary
// (an upgrade test starts on the previous release, then this one).
func (p *Proc) UseBinary(bin string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bin = bin
}

// AddNode prepares (without starting) one more node on the cluster's
// subnet that joins the others, with extraEnv on top (e.g. another
// UDMG_CLUSTER_JOINTOKEN for a stranger). It is killed with the cluster.
func (c *Cluster) AddNode(extraEnv ...string) *Proc {
	c.t.Helper()
	first := c.Nodes[0]
	i := len(c.Nodes) + 1
	subnet := first.IP[:strings.LastIndexByte(first.IP, '.')+1]
	ip := fmt.Sprintf("%s%d", subnet, i)
	p := &Proc{
		Name:    fmt.Sprintf("node%d", i),
		IP:      ip,
		DataDir: filepath.Join(c.Dir, fmt.Sprintf("node%d", i)),
		LogPath: filepath.Join(c.Dir, fmt.Sprintf("node%d.log", i)),
		bin:     first.bin,
	}
	for _, kv := range first.env {
		switch {
		case strings.HasPrefix(kv, "UDMG_ADMIN_HOST="), strings.HasPrefix(kv, "UDMG_CLUSTER_DATADIR="),
			strings.HasPrefix(kv, "UDMG_CLUSTER_RAFTADDRESS="), strings.HasPrefix(kv, "UDMG_CLUSTER_GOSSIPADDRESS="),
			strings.HasPrefix(kv, "UDMG_CLUSTER_ADVERTISEHOST="), strings.HasPrefix(kv, "UDMG_LISTENERS_HOST="),
			strings.HasPrefix(kv, "UDMG_CLUSTER_BOOTSTRAPEXPECT="):
			continue
		}
		p.env = append(p.env, kv)
	}
	p.env = append(p.env,
		"UDMG_ADMIN_HOST="+ip,
		"UDMG_CLUSTER_DATADIR="+p.DataDir,
		fmt.Sprintf("UDMG_CLUSTER_RAFTADDRESS=%s:%d", ip, RaftPort),
		fmt.Sprintf("UDMG_CLUSTER_GOSSIPADDRESS=%s:%d", ip, GossipPort),
		"UDMG_CLUSTER_ADVERTISEHOST="+ip,
		"UDMG_LISTENERS_HOST="+ip,
		fmt.Sprintf("UDMG_CLUSTER_JOIN=%s:%d", first.IP, GossipPort),
	)
	p.env = append(p.env, extraEnv...)
	c.Nodes = append(c.Nodes, p)
	return p
}

// Start runs the process (again), appending to its log.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := p.command()
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// Signal sends sig to the process if it runs.
func (p *Proc) Signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(sig)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() { p.Signal(syscall.SIGKILL); p.Wait(10 * time.Second) }

// Wait waits for the process to exit; false if it still runs after d.
func (p *Proc) Wait(d time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// ExitCode is the exit status of the last run (-1 while running or killed).
func (p *Proc) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return -1
	}
	select {
	case <-p.done: // cmd.Wait has returned: ProcessState is written
	default:
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Log returns the process's whole log.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// LogTail returns the last n lines of the log.
func (p *Proc) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CountLog counts log lines containing s.
func (p *Proc) CountLog(s string) int {
	n := 0
	sc := bufio.NewScanner(bytes.NewReader([]byte(p.Log())))
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n
}

// AdminURL is the node's API base URL.
func (p *Proc) AdminURL() string { return fmt.Sprintf("http://%s:%d", p.IP, AdminPort) }

// SFTPAddr and FTPAddr are the node's MFT listener addresses.
func (p *Proc) SFTPAddr() string { return net.JoinHostPort(p.IP, fmt.Sprint(SFTPPort)) }
func (p *Proc) FTPAddr() string  { return net.JoinHostPort(p.IP, fmt.Sprint(FTPPort)) }

var httpClient = &http.Client{Timeout: 2 * time.Second}

// Ping returns /ping's status code and body ("" and 0 when unreachable).
func (p *Proc) Ping() (int, string) {
	resp, err := httpClient.Get(p.AdminURL() + "/ping")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, strings.TrimSpace(b.String())
}

// Modes returns each node's /ping body, in node order.
func (c *Cluster) Modes() []string {
	out := make([]string, len(c.Nodes))
	var wg sync.WaitGroup
	for i, p := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, out[i] = p.Ping()
		}()
	}
	wg.Wait()
	return out
}

// WaitOneActive polls until exactly one node answers ACTIVE and every other
// node in want answers its listed mode; it returns the ACTIVE node.
func (c *Cluster) WaitOneActive(timeout time.Duration, others string, skip ...*Proc) *Proc {
	c.t.Helper()
	var active *Proc
	var modes []string
	ok := Eventually(timeout, func() bool {
		modes = c.Modes()
		active = nil
		for i, m := range modes {
			if isSkipped(c.Nodes[i], skip) {
				continue
			}
			switch {
			case m == "ACTIVE" && active == nil:
				active = c.Nodes[i]
			case m == "ACTIVE":
				return false
			case others != "" && m != others:
				return false
			}
		}
		return active != nil
	})
	if !ok {
		c.t.Fatalf("no single ACTIVE node with the others %s within %s; modes %q", others, timeout, modes)
	}
	return active
}

// ActiveNow is the node that answers ACTIVE now, leaving out skip.
func (c *Cluster) ActiveNow(skip ...*Proc) (*Proc, bool) {
	for i, m := range c.Modes() {
		if m == "ACTIVE" && !isSkipped(c.Nodes[i], skip) {
			return c.Nodes[i], true
		}
	}
	return nil, false
}

// Other returns the first node of c that is not p (nil for a one-node
// cluster).
func (c *Cluster) Other(p *Proc) *Proc {
	for _, n := range c.Nodes {
		if n != p {
			return n
		}
	}
	return nil
}

func isSkipped(p *Proc, skip []*Proc) bool {
	for _, s := range skip {
		if s == p {
			return true
		}
	}
	return false
}

// Eventually polls cond every 20ms until it holds or timeout passes.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NodeByName returns the node called name, or nil.
func (c *Cluster) NodeByName(name string) *Proc {
	for _, p := range c.Nodes {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Usage is a process's CPU time and resident memory at a moment.
type Usage struct {
	At  time.Time
	CPU time.Duration
	RSS int64
}

// Pid is the process ID of the last run.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Usage reads the process's CPU time and RSS from /proc.
func (p *Proc) Usage() Usage {
	u := procUsage(p.Pid(), false)
	u.At = time.Now()
	return u
}

// procUsage reads a process's CPU time (with that of its reaped children
// when children is set) and RSS from /proc/<pid>/stat.
func procUsage(pid int, children bool) Usage {
	var u Usage
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u
	}
	// Fields after the command name: utime and stime are the 12th and
	// 13th, cutime and cstime the 14th and 15th, rss the 22nd (in pages).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	var ut, st, cut, cst, rss int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	fmt.Sscan(f[13], &cut)
	fmt.Sscan(f[14], &cst)
	fmt.Sscan(f[21], &rss)
	if !children {
		cut, cst = 0, 0
	}
	u.CPU = time.Duration(ut+st+cut+cst) * time.Second / 100 // USER_HZ
	u.RSS = rss * int64(os.Getpagesize())
	return u
}

// ArtefactDir is where tests leave files for people to look at (screenshots):
// bin/artefacts under the module root, created when missing.
func ArtefactDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(moduleRoot(), "bin", "artefacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
