package transfer_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

var chainFiles = flag.Int("chain.files", 0, "files of TestChainRate (issue 14's figure: 1000); 0 skips it")

// TestChainRate is issue 14's throughput figure, not a pass/fail check of
// speed: N files of 100 KiB uploaded over OpenSSH's sftp in one session to
// a receive rule without tasks, then the same files to a rule whose
// post-tasks ENCRYPT each for a partner's OpenPGP key and TRANSFER it to a
// real sshd partner. It reports files/s of each, from the first put to the
// last upload acknowledged (no tasks) or to the last chain ended with its
// encrypted copy at the partner (tasks). Run it with -args -chain.files=1000.
func TestChainRate(t *testing.T) {
	if *chainFiles == 0 {
		t.Skip("a figure: run with -args -chain.files=N")
	}
	needTool(t, "sftp")
	n := *chainFiles
	gpg := ts.NewGPG(t)
	sshd := ts.StartSSHD(t)
	c := ts.NewCluster(t, 1)
	api := c.WaitOneActive(60*time.Second, "").Admin()
	keyPath, pub := userKey(t)
	setupServers(t, api, pub, 34000+int(time.Now().UnixNano()%1000))
	remoteDir := t.TempDir()
	setupPartner(t, api, sshd, remoteDir)
	api.Must(t, 201, "POST", "/api/keys", map[string]any{"name": "remote-pgp", "key": gpg.NewKey("Remote <files@remote.example>")})
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "routed", "direction": "receive", "path": "/routed",
		"postTasks": []map[string]any{
			{"type": "ENCRYPT", "args": map[string]any{"key": "remote-pgp"}},
			{"type": "TRANSFER", "args": map[string]any{"to": "remote", "as": currentUser(t), "rule": "push"}},
		}})
	src := t.TempDir()
	var puts [2]strings.Builder
	for i := range n {
		name := fmt.Sprintf("r%04d.bin", i)
		ts.WriteRandomFile(t, filepath.Join(src, name), 100<<10)
		for k, dir := range []string{"in", "routed"} {
			fmt.Fprintf(&puts[k], "put %s %s/%s\n", filepath.Join(src, name), dir, name)
		}
	}
	sftpAddr := fmt.Sprintf("%s:%d", c.Nodes[0].IP, sftpPort)
	upload := func(k int, dir string) time.Duration {
		start := time.Now()
		if out, err := ts.SFTP(sftpAddr, "bob", keyPath, "-mkdir "+dir+"\n"+puts[k].String()); err != nil {
			t.Fatalf("sftp to %s: %v\n%s", dir, err, out)
		}
		return time.Since(start)
	}
	plain := upload(0, "in")
	start := time.Now()
	upload(1, "routed")
	sealed := func() int {
		entries, _ := os.ReadDir(remoteDir)
		count := 0
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".bin.pgp") {
				count++
			}
		}
		return count
	}
	idle := func() bool {
		live, err := api.Transfers()
		if err != nil {
			return false
		}
		for _, tr := range live {
			if tr.Status == "RUNNING" || tr.Status == "PLANNED" {
				return false
			}
		}
		return true
	}
	if !ts.Eventually(30*time.Minute, func() bool { return sealed() == n && idle() }) {
		t.Fatalf("%d of %d encrypted files at the partner after 30 min", sealed(), n)
	}
	routed := time.Since(start)
	t.Logf("%d files of 100 KiB: no tasks %.1f files/s (%s); receive → ENCRYPT → TRANSFER %.1f files/s (%s); ratio %.2f",
		n, float64(n)/plain.Seconds(), plain.Round(time.Millisecond), float64(n)/routed.Seconds(), routed.Round(time.Millisecond), plain.Seconds()/routed.Seconds())
}
