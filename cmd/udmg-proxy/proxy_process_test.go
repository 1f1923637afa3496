package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi/wire"
	ts "github.com/udmg/gateway/testsupport"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// proxyBinary builds this command once per test binary.
func proxyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "udmg-proxy-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "udmg-proxy")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// startProxy runs udmg-proxy on config and waits until it answers on
// inet:port; the process is killed when the test ends.
// It returns the proxy's log so far, each time it is called.
func startProxy(t *testing.T, config, addr string) (log func() string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "server.toml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "proxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the process keeps its own descriptor
	log = func() string {
		b, _ := os.ReadFile(logFile.Name())
		return string(b)
	}
	cmd := exec.Command(proxyBinary(t), "-c", path)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("proxy log:\n%s", log())
		}
	})
	client := &http.Client{Timeout: 2 * time.Second}
	if !ts.Eventually(20*time.Second, func() bool {
		resp, err := client.Get("http://" + addr + "/service/none")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNotFound
	}) {
		t.Fatalf("proxy not answering on %s", addr)
	}
	return log
}

// TestBadConfigStopsStartup: a mistake in server.toml ends the process at
// once with one line naming the file, the line and the key.
func TestBadConfigStopsStartup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.toml")
	config := "[proxy]\nport = \"5000\"\ninet = \"127.0.0.1\"\ncrs = true\n\n[service.mft]\n[[service.mft.targets]]\nhostname = \"h\"\nport = 8080\n"
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(proxyBinary(t), "-c", path)
	cmd.Stderr = &stderr
	err := cmd.Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2", err)
	}
	want := "udmg-proxy: " + path + ":4: [proxy] crs: unknown key (known keys: recover, cors, tracker, logger, port, inet)\n"
	if stderr.String() != want {
		t.Fatalf("stderr %q\nwant %q", stderr.String(), want)
	}
}

// sample is one request through the proxy during the failover.
type sample struct {
	status int
	target string
	err    error
}

// TestFailoverThroughProxy: three real nodes behind a real udmg-proxy whose
// first target is the ACTIVE node. The node is killed while an operator's
// session (a bearer token) keeps polling through the proxy: every request
// is answered, by another target from then on, and writes work again as
// soon as the new leader is in place.
func TestFailoverThroughProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	c := ts.NewCluster(t, 3)
	first := c.WaitOneActive(60*time.Second, "PASSIVE")
	targets := []*ts.Proc{first}
	for _, p := range c.Nodes {
		if p != first {
			targets = append(targets, p)
		}
	}
	proxyIP := first.IP[:strings.LastIndex(first.IP, ".")] + ".200" // in the cluster's 127.0.X.0/24
	proxyAddr := proxyIP + ":5000"
	var config strings.Builder
	fmt.Fprintf(&config, "[proxy]\nrecover = true\ncors = true\ntracker = true\nlogger = true\nport = \"5000\"\ninet = %q\n\n", proxyIP)
	fmt.Fprintf(&config, "[service.mft]\nprotocol = \"http\"\npolicy = \"failover\"\nadmins = [\"admin\"]\n")
	for _, p := range targets {
		fmt.Fprintf(&config, "\n[[service.mft.targets]]\nhostname = %q\nport = %d\n", p.IP, ts.AdminPort)
	}
	proxyLog := startProxy(t, config.String(), proxyAddr)

	admin := &ts.APIClient{Base: "http://" + proxyAddr + "/service/mft", User: "admin", Password: ts.AdminPassword}
	r, err := admin.Do("POST", "/api/tokens", nil)
	var tok struct {
		Token string `json:"token"`
	}
	if err != nil || r.Status != 201 || r.Decode(&tok) != nil {
		t.Fatalf("token through the proxy: %v %v", err, r)
	}
	session := admin.WithToken(tok.Token)
	var before wire.ClusterStatus
	if r, err := session.Do("GET", "/api/cluster", nil); err != nil || r.Status != 200 || r.Decode(&before) != nil {
		t.Fatalf("cluster status through the proxy: %v %v", err, r)
	}

	// The operator's session polls every 20 ms until told to stop.
	var (
		mu      sync.Mutex
		samples []sample
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			r, err := session.Do("GET", "/api/sb_healthcheck", nil)
			s := sample{err: err}
			if err == nil {
				s.status, s.target = r.Status, r.Header.Get("X-Udmg-Proxy-Target")
			}
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
		}
	}()
	stopPolling := sync.OnceFunc(func() { close(stop); <-done })
	defer stopPolling()
	servedBy := func(target string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range samples {
			if s.target == target {
				n++
			}
		}
		return n
	}
	firstAddr := fmt.Sprintf("%s:%d", first.IP, ts.AdminPort)
	if !ts.Eventually(10*time.Second, func() bool { return servedBy(firstAddr) >= 5 }) {
		t.Fatalf("the session is not served by the first target %s", firstAddr)
	}

	first.Kill()
	second := fmt.Sprintf("%s:%d", targets[1].IP, ts.AdminPort)
	if !ts.Eventually(20*time.Second, func() bool { return servedBy(second) >= 25 }) {
		t.Fatalf("the session did not move to %s", second)
	}
	next := c.WaitOneActive(30*time.Second, "", first)

	// A write through the proxy once the new leader is in place (a request
	// that meets the election may be told to retry: 503).
	var created *ts.Response
	if !ts.Eventually(30*time.Second, func() bool {
		created, err = session.Do("POST", "/api/users", map[string]any{"username": "after-failover", "password": "after-failover-pw", "perms": map[string]string{}})
		return err == nil && created.Status == 201
	}) {
		t.Fatalf("write through the proxy after the failover: %v %v", err, created)
	}
	var after wire.ClusterStatus
	if r, err := session.Do("GET", "/api/cluster", nil); err != nil || r.Status != 200 || r.Decode(&after) != nil {
		t.Fatalf("cluster status after the failover: %v %v", err, r)
	}
	stopPolling()

	mu.Lock()
	defer mu.Unlock()
	failed := 0
	for _, s := range samples {
		if s.err != nil || s.status != 200 {
			failed++
			t.Errorf("request during the failover: status %d, err %v", s.status, s.err)
		}
	}
	t.Logf("%d requests through the proxy, %d failed; ACTIVE %s -> %s, epoch %d -> %d",
		len(samples), failed, before.Active, after.Active, before.Lease.Epoch, after.Lease.Epoch)
	nextID := fmt.Sprintf("%s:%d", next.IP, ts.AdminPort)
	if after.Lease.Epoch <= before.Lease.Epoch || !strings.HasPrefix(after.Active, nextID) {
		t.Errorf("after the failover: active %q epoch %d; want %s… with an epoch above %d", after.Active, after.Lease.Epoch, nextID, before.Lease.Epoch)
	}
	if !strings.Contains(proxyLog(), "failover: now using another target") {
		t.Errorf("the proxy did not log its failover")
	}
}
