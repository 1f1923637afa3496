package testsupport

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Vsftpd is Debian's vsftpd serving plain FTP (no TLS, passive mode only,
// as the gateway's FTP servers without a certificate) on a loopback port:
// the reference the gateway's FTP server is measured against. One local
// system user, made for it and deleted at cleanup, logs in with a password
// and is chrooted into Home, which he reads and writes.
type Vsftpd struct {
	Addr       string
	User       string
	Password   string
	Home       string
	PassiveMin int // its passive ports, PassiveMin to PassiveMax
	PassiveMax int
	Dir        string // holds the config and log
	cmd        *exec.Cmd
}

// StartVsftpd runs vsftpd in the foreground until the test ends; it skips
// the test when vsftpd is not installed (make deps installs it) or the
// tests do not run as root (vsftpd's local logins go through PAM, so the
// user must be a real one).
func StartVsftpd(t testing.TB) *Vsftpd {
	t.Helper()
	bin := "/usr/sbin/vsftpd"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("%s not installed (make deps installs vsftpd)", bin)
	}
	if os.Geteuid() != 0 {
		t.Skip("vsftpd's login needs a local user: the tests must run as root to create one")
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	v := &Vsftpd{User: "udmgftp" + hex.EncodeToString(suffix), Password: "vsftpd-" + rand.Text(), Dir: t.TempDir()}
	// The home is not under t.TempDir (mode 0700, root's): vsftpd enters it
	// as the user.
	home, err := os.MkdirTemp("", "vsftpd-home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	v.Home = home
	if out, err := exec.Command("useradd", "--no-create-home", "--home-dir", home, "--shell", "/bin/sh", v.User).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", v.User, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", v.User).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", v.User, err, out)
		}
	})
	chpasswd := exec.Command("chpasswd")
	chpasswd.Stdin = strings.NewReader(v.User + ":" + v.Password + "\n")
	if out, err := chpasswd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd %s: %v\n%s", v.User, err, out)
	}
	u, err := user.Lookup(v.User)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	v.PassiveMin = freePortRange(t, 10)
	v.PassiveMax = v.PassiveMin + 9
	v.Addr = fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	host, port, _ := net.SplitHostPort(v.Addr)
	conf := strings.Join([]string{
		"listen=YES",
		"listen_ipv6=NO",
		"listen_address=" + host,
		"listen_port=" + port,
		"background=NO",
		"anonymous_enable=NO",
		"local_enable=YES",
		"write_enable=YES",
		"local_umask=022",
		"chroot_local_user=YES",
		"allow_writeable_chroot=YES",
		"port_enable=NO",
		"pasv_enable=YES",
		fmt.Sprintf("pasv_min_port=%d", v.PassiveMin),
		fmt.Sprintf("pasv_max_port=%d", v.PassiveMax),
		"ssl_enable=NO",
		"pam_service_name=vsftpd",
		"secure_chroot_dir=/var/run/vsftpd/empty",
		"xferlog_enable=NO",
		"log_ftp_protocol=NO",
	}, "\n") + "\n"
	cfg := filepath.Join(v.Dir, "vsftpd.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll("/var/run/vsftpd/empty", 0o755)
	cmd := exec.Command(bin, cfg)
	v.cmd = cmd
	logf, err := os.Create(filepath.Join(v.Dir, "vsftpd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: the sessions it forks end with it, before
	// userdel runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start vsftpd: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	if !Eventually(10*time.Second, func() bool { return Greeting(v.Addr, time.Second, "220") }) {
		b, _ := os.ReadFile(filepath.Join(v.Dir, "vsftpd.log"))
		t.Fatalf("vsftpd on %s did not answer:\n%s", v.Addr, b)
	}
	return v
}

// SampleCPU starts sampling the CPU time of vsftpd's processes, and stop
// returns what they used since. Sampled, every 10 ms, because vsftpd's
// figures in /proc lose its sessions' time (a session's post-login process
// is not reaped into the listener's children time, as SSHD.CPU relies on):
// a process's last ticks before it exits are missed.
func (v *Vsftpd) SampleCPU() (stop func() time.Duration) {
	pid := v.cmd.Process.Pid
	start := procUsage(pid, false).CPU
	used := map[int]time.Duration{} // by process, the most seen
	var mu sync.Mutex
	quit, done := make(chan struct{}), make(chan struct{})
	sample := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range processTree(pid) {
			used[p] = max(used[p], procUsage(p, false).CPU)
		}
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return func() time.Duration {
		close(quit)
		<-done
		sample()
		total := -start
		for _, cpu := range used {
			total += cpu
		}
		return total
	}
}

// processTree is pid and its descendants, as /proc shows them now.
func processTree(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", out[i], out[i]))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// URL is the ftp:// URL of path in the user's home, credentials included.
func (v *Vsftpd) URL(path string) string {
	return fmt.Sprintf("ftp://%s:%s@%s/%s", v.User, v.Password, v.Addr, path)
}

// freePortRange returns the first of n consecutive ports free on
// 127.0.0.1, from 36000 to 38999: above the ranges the gateway's FTP
// servers use in the tests and benchmarks (30000-30009 by default,
// 33000-35008 in make bench).
func freePortRange(t testing.TB, n int) int {
	t.Helper()
	for range 50 {
		off, _ := rand.Int(rand.Reader, big.NewInt(int64(3000-n)))
		first := 36000 + int(off.Int64())
		var held []net.Listener
		for p := first; p < first+n; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if len(held) == n {
			return first
		}
	}
	t.Fatalf("no %d consecutive free ports in 36000-38999", n)
	return 0
}
