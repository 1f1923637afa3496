package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/udmg/gateway/licensing"
	"github.com/udmg/gateway/testsupport"
)

// Timing is the [controller] settings the compose cluster runs with.
type Timing struct {
	Heartbeat, Deadline, HeartbeatCheck time.Duration
}

// defaultTiming must match the defaults in docker-compose.yml.
var defaultTiming = Timing{Heartbeat: 400 * time.Millisecond, Deadline: 1600 * time.Millisecond, HeartbeatCheck: 1200 * time.Millisecond}

// adminPassword is the initial administrator of the e2e cluster; SFTP logs
// in as admin with it until local accounts exist.
const adminPassword = "e2e-admin-secret"

// Node is one container of the project: a udmg-server node, or db.
type Node struct {
	Name      string // compose service: node1..node3, db
	Idx       int    // position in Cluster.Nodes; -1 for db
	ID        string // container ID
	ClusterIP string // Raft, gossip, database
	FrontIP   string // API, SFTP, FTP: what the load balancer and the prober dial
}

func (n *Node) pingURL() string  { return "http://" + n.FrontIP + ":8080/ping" }
func (n *Node) sftpAddr() string { return n.FrontIP + ":2222" }
func (n *Node) ftpAddr() string  { return n.FrontIP + ":2121" }

// Cluster is the compose project under test.
type Cluster struct {
	t        testing.TB
	root     string
	project  string
	compose  []string
	env      []string
	timing   Timing
	nettools string

	netCluster, netFront     string // "172.30.7" prefixes of the two /24 networks
	lbHost                   string
	apiPort, sftpPort, ftpPt int
	homeDir                  string // host path of the GatewayHome volume ("" = read through a container)
	useNsenter               bool   // iptables through the host's nsenter (root), else a helper container

	Nodes []*Node
	db    *Node // PostgreSQL (Idx -1)
}

// run executes a command with a time limit and returns its combined output.
func run(timeout time.Duration, name string, args ...string) (string, error) {
	return runEnv(nil, timeout, name, args...)
}

func runEnv(env []string, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, ctx.Err())
	}
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(string(out), 20))
	}
	return string(out), nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// requireDocker skips loudly unless E2E=1 and a Docker engine answers.
func requireDocker(t *testing.T) {
	t.Helper()
	if os.Getenv("E2E") != "1" {
		t.Skip("e2e: SKIPPED — the docker compose chaos suite runs with E2E=1 (use `make e2e`)")
	}
	out, err := run(15*time.Second, "docker", "info", "--format", "{{.ServerVersion}}")
	if err != nil {
		msg := "\n" + strings.Repeat("!", 72) + "\n!! e2e: SKIPPED — no Docker engine answers (`docker info` failed)\n" + strings.Repeat("!", 72)
		fmt.Println(msg)
		t.Skipf("%s\n%v", msg, err)
	}
	t.Logf("docker engine %s", strings.TrimSpace(out))
}

// images builds (or finds, by content hash) the images and returns the
// compose image variables. The node binary trusts the test vendor key of
// testsupport, so that the suite can license its three nodes.
func images(t testing.TB, root string) map[string]string {
	keys := []string{"UDMG_NODE_IMAGE", "POSTGRES_IMAGE", "HAPROXY_IMAGE", "NETTOOLS_IMAGE"}
	envFile := filepath.Join(root, "bin", "images-e2e.env")
	os.MkdirAll(filepath.Dir(envFile), 0o755)
	start := time.Now()
	out, err := runEnv(append(os.Environ(), "IMAGES_ENV="+envFile, "VENDOR_KEY="+licensing.EncodePublicKey(testsupport.VendorPublic())),
		25*time.Minute, filepath.Join(root, "deploy", "build-images.sh"))
	if err != nil {
		t.Fatalf("building images: %v", err)
	}
	t.Logf("images ready in %v:\n%s", time.Since(start).Round(100*time.Millisecond), tail(out, 8))
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	for _, k := range keys {
		if vars[k] == "" {
			t.Fatalf("deploy/build-images.sh did not name %s", k)
		}
	}
	return vars
}

func composeCommand() ([]string, error) {
	if _, err := run(20*time.Second, "docker-compose", "version"); err == nil {
		return []string{"docker-compose"}, nil
	}
	if _, err := run(20*time.Second, "docker", "compose", "version"); err == nil {
		return []string{"docker", "compose"}, nil
	}
	return nil, errors.New("neither docker-compose nor `docker compose` works")
}

// freeSubnets picks two unused 172.30.X.0/24 prefixes for the compose networks.
func freeSubnets() (string, string, error) {
	var used []*net.IPNet
	if ids, err := run(20*time.Second, "docker", "network", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(ids) {
			out, err := run(20*time.Second, "docker", "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", id)
			if err != nil {
				continue
			}
			for _, s := range strings.Fields(out) {
				if _, n, err := net.ParseCIDR(s); err == nil {
					used = append(used, n)
				}
			}
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				used = append(used, n)
			}
		}
	}
	free := func(prefix string) bool {
		_, n, _ := net.ParseCIDR(prefix + ".0/24")
		for _, u := range used {
			if u.Contains(n.IP) || n.Contains(u.IP) {
				return false
			}
		}
		return true
	}
	for range 200 {
		x := 2 * mrand.IntN(120)
		a, b := fmt.Sprintf("172.30.%d", x), fmt.Sprintf("172.30.%d", x+1)
		if free(a) && free(b) {
			return a, b, nil
		}
	}
	return "", "", errors.New("no free 172.30.X.0/24 pair for the compose networks")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// StartCluster brings the compose project up and waits for one ACTIVE node.
func StartCluster(t *testing.T) *Cluster {
	root := moduleRoot()
	vars := images(t, root)
	compose, err := composeCommand()
	if err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 3)
	rand.Read(suffix)
	c := &Cluster{
		t:        t,
		root:     root,
		project:  "udmge2e" + hex.EncodeToString(suffix),
		compose:  compose,
		nettools: vars["NETTOOLS_IMAGE"],
		lbHost:   "127.0.0.1",
		timing: Timing{
			Heartbeat:      envDuration("E2E_HEARTBEAT", defaultTiming.Heartbeat),
			Deadline:       envDuration("E2E_DEADLINE", defaultTiming.Deadline),
			HeartbeatCheck: envDuration("E2E_HEARTBEATCHECK", defaultTiming.HeartbeatCheck),
		},
	}
	if c.netCluster, c.netFront, err = freeSubnets(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*int{&c.apiPort, &c.sftpPort, &c.ftpPt} {
		if *p, err = freePort(); err != nil {
			t.Fatal(err)
		}
	}
	// The compose variables; nothing UDMG_* from the caller's environment
	// reaches docker-compose (and compose passes none of them to the nodes).
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "UDMG_") && !strings.HasPrefix(kv, "COMPOSE_") {
			c.env = append(c.env, kv)
		}
	}
	licenseDir := t.TempDir()
	testsupport.WriteLicense(t, filepath.Join(licenseDir, "license.json"), 3)
	os.Chmod(licenseDir, 0o755)
	c.env = append(c.env,
		"COMPOSE_PROJECT_NAME="+c.project,
		"UDMG_LICENSE_DIR="+licenseDir,
		"UDMG_LICENSE=/etc/udmg/license/license.json",
		"UDMG_NODE_IMAGE="+vars["UDMG_NODE_IMAGE"],
		"POSTGRES_IMAGE="+vars["POSTGRES_IMAGE"],
		"HAPROXY_IMAGE="+vars["HAPROXY_IMAGE"],
		"UDMG_ADMIN_PASSWORD="+adminPassword,
		"UDMG_JOIN_TOKEN="+testsupport.NewJoinToken(),
		"UDMG_HEARTBEAT="+c.timing.Heartbeat.String(),
		"UDMG_DEADLINE="+c.timing.Deadline.String(),
		"UDMG_HEARTBEATCHECK="+c.timing.HeartbeatCheck.String(),
		"UDMG_NET_CLUSTER="+c.netCluster,
		"UDMG_NET_FRONT="+c.netFront,
		"UDMG_LB_HOST="+c.lbHost,
		"UDMG_LB_API_PORT="+strconv.Itoa(c.apiPort),
		"UDMG_LB_SFTP_PORT="+strconv.Itoa(c.sftpPort),
		"UDMG_LB_FTP_PORT="+strconv.Itoa(c.ftpPt),
		"UDMG_RESTART=no",
	)
	for i := 1; i <= 3; i++ {
		c.Nodes = append(c.Nodes, &Node{
			Name: fmt.Sprintf("node%d", i), Idx: i - 1,
			ClusterIP: fmt.Sprintf("%s.%d", c.netCluster, 10+i),
			FrontIP:   fmt.Sprintf("%s.%d", c.netFront, 10+i),
		})
	}
	t.Logf("compose project %s: networks %s.0/24 (cluster) %s.0/24 (front); lb on %s api:%d sftp:%d ftp:%d; timing heartbeat=%v deadline=%v heartbeatcheck=%v",
		c.project, c.netCluster, c.netFront, c.lbHost, c.apiPort, c.sftpPort, c.ftpPt, c.timing.Heartbeat, c.timing.Deadline, c.timing.HeartbeatCheck)

	t.Cleanup(c.teardown)
	start := time.Now()
	if _, err := c.Compose(6*time.Minute, "up", "-d", "--no-build"); err != nil {
		t.Fatalf("compose up: %v", err)
	}
	t.Logf("compose up took %v", time.Since(start).Round(100*time.Millisecond))
	for _, n := range c.Nodes {
		n.ID = c.containerID(n.Name)
	}
	c.db = &Node{Name: "db", Idx: -1, ID: c.containerID("db")}

	if out, err := run(20*time.Second, "docker", "volume", "inspect", "-f", "{{.Mountpoint}}", c.project+"_home"); err == nil {
		dir := strings.TrimSpace(out)
		if _, err := os.ReadDir(dir); err == nil {
			c.homeDir = dir
		}
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("nsenter"); err == nil {
			if _, err := exec.LookPath("iptables"); err == nil {
				c.useNsenter = true
			}
		}
	}
	return c
}

func (c *Cluster) containerID(service string) string {
	out, err := c.Compose(time.Minute, "ps", "-q", service)
	id := strings.TrimSpace(out)
	if err != nil || id == "" {
		c.t.Fatalf("no container for %s: %v", service, err)
	}
	return id
}

// Compose runs docker-compose (or docker compose) on this project.
func (c *Cluster) Compose(timeout time.Duration, args ...string) (string, error) {
	full := append(append(append([]string{}, c.compose[1:]...), "-p", c.project, "-f", filepath.Join(c.root, "docker-compose.yml"), "--project-directory", c.root), args...)
	return runEnv(c.env, timeout, c.compose[0], full...)
}

// saveLogs writes every container's log to bin/e2e-logs/<project>.log.
func (c *Cluster) saveLogs() string {
	dir := filepath.Join(c.root, "bin", "e2e-logs")
	os.MkdirAll(dir, 0o755)
	path := filepath.Join(dir, c.project+".log")
	out, err := c.Compose(3*time.Minute, "logs", "--no-color", "--timestamps")
	if err != nil {
		out += "\n" + err.Error()
	}
	os.WriteFile(path, []byte(out), 0o644)
	return path
}

func (c *Cluster) teardown() {
	for _, n := range c.Nodes {
		if n.ID != "" {
			run(20*time.Second, "docker", "unpause", n.ID)
		}
	}
	path := c.saveLogs()
	c.t.Logf("container logs saved to %s", path)
	if os.Getenv("E2E_KEEP") == "1" {
		c.t.Logf("E2E_KEEP=1: leaving project %s up (docker-compose -p %s down -v to remove)", c.project, c.project)
		return
	}
	if _, err := c.Compose(5*time.Minute, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
		c.t.Logf("compose down: %v", err)
	}
}

// ---- faults ----

func (c *Cluster) docker(args ...string) error {
	_, err := run(90*time.Second, "docker", args...)
	return err
}

// Kill sends SIGKILL to the container's process.
func (c *Cluster) Kill(n *Node) error { return c.docker("kill", "-s", "KILL", n.ID) }

// Start starts a stopped container again.
func (c *Cluster) Start(n *Node) error { return c.docker("start", n.ID) }

// Stop stops a container: SIGTERM, SIGKILL after a grace period.
func (c *Cluster) Stop(n *Node) error { return c.docker("stop", "-t", "20", n.ID) }

// Restart stops and starts a container (SIGTERM first).
func (c *Cluster) Restart(n *Node) error { return c.docker("restart", "-t", "20", n.ID) }

// Pause freezes every process of the container (cgroup freezer).
func (c *Cluster) Pause(n *Node) error { return c.docker("pause", n.ID) }

// Unpause thaws it.
func (c *Cluster) Unpause(n *Node) error { return c.docker("unpause", n.ID) }

func (c *Cluster) clusterNet() string { return c.project + "_cluster" }

// Disconnect removes the node from the cluster network (Raft, gossip,
// database); it stays reachable on the front network.
func (c *Cluster) Disconnect(n *Node) error {
	return c.docker("network", "disconnect", "-f", c.clusterNet(), n.ID)
}

// Reconnect puts the node back on the cluster network with its address.
func (c *Cluster) Reconnect(n *Node) error {
	return c.docker("network", "connect", "--ip", n.ClusterIP, c.clusterNet(), n.ID)
}

// Partition cuts the cluster network between groups of nodes with iptables
// in each node's network namespace: nodes in different groups can no
// longer exchange a packet; the database and the front network stay
// reachable. Nodes in no group are left alone.
func (c *Cluster) Partition(groups ...[]*Node) error {
	group := map[*Node]int{}
	for g, ns := range groups {
		for _, n := range ns {
			group[n] = g + 1
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		g, ok := group[n]
		if !ok {
			continue
		}
		var drops []string
		for _, p := range c.Nodes {
			if p != n && group[p] != g {
				drops = append(drops, p.ClusterIP)
			}
		}
		script := "iptables -w -N E2E 2>/dev/null; iptables -w -F E2E; " +
			"iptables -w -C INPUT -j E2E 2>/dev/null || iptables -w -I INPUT -j E2E; " +
			"iptables -w -C OUTPUT -j E2E 2>/dev/null || iptables -w -I OUTPUT -j E2E"
		for _, ip := range drops {
			script += fmt.Sprintf("; iptables -w -A E2E -s %s -j DROP; iptables -w -A E2E -d %s -j DROP", ip, ip)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.inNetns(n, script)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Heal removes every partition rule.
func (c *Cluster) Heal() error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.inNetns(n, "iptables -w -F E2E 2>/dev/null; true")
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// inNetns runs a shell script in the node's network namespace: with the
// host's nsenter and iptables when running as root, else in a throw-away
// container of the Debian base image sharing the node's network.
func (c *Cluster) inNetns(n *Node, script string) error {
	if c.useNsenter {
		pid, err := run(20*time.Second, "docker", "inspect", "-f", "{{.State.Pid}}", n.ID)
		if err != nil {
			return err
		}
		_, err = run(20*time.Second, "nsenter", "-t", strings.TrimSpace(pid), "-n", "sh", "-c", script)
		return err
	}
	_, err := run(60*time.Second, "docker", "run", "--rm", "--network", "container:"+n.ID, "--cap-add", "NET_ADMIN", c.nettools, "sh", "-c", script)
	return err
}

// nodeLogsSince returns the node's log lines since t.
func (c *Cluster) nodeLogsSince(n *Node, since time.Time) string {
	out, _ := run(60*time.Second, "docker", "logs", "--since", since.UTC().Format(time.RFC3339Nano), n.ID)
	return out
}

// psql runs a query in the database container; "" and an error when it fails.
func (c *Cluster) psql(query string) (string, error) {
	out, err := run(20*time.Second, "docker", "exec", "-e", "PGPASSWORD=udmg_password", c.db.ID, "psql", "-h", "127.0.0.1", "-U", "udmg_user", "-d", "udmg", "-tAc", query)
	return strings.TrimSpace(out), err
}
