package testsupport

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// SSHD is OpenSSH's sshd serving its own sftp-server on a loopback port: a
// real remote SFTP partner (and the reference the gateway is measured
// against). It accepts one key for the user running the tests.
type SSHD struct {
	Addr    string
	User    string
	Dir     string // holds the keys and config; files go wherever paths say
	HostKey string // authorized_keys line of its host key
	// ClientKey is the private key (OpenSSH PEM) it accepts, ClientKeyFile
	// the same on disk for the OpenSSH client.
	ClientKey     string
	ClientKeyFile string
	cmd           *exec.Cmd
}

// StartSSHD runs sshd -D on a free port of 127.0.0.1 until the test ends;
// it skips the test when sshd is not installed (make deps installs it).
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	return startSSHD(t, false)
}

// StartSSHDInternalSFTP is StartSSHD serving SFTP in sshd's own process
// (Subsystem sftp internal-sftp), as the small-file reference.
func StartSSHDInternalSFTP(t testing.TB) *SSHD {
	t.Helper()
	return startSSHD(t, true)
}

func startSSHD(t testing.TB, internal bool) *SSHD {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	sftpServer := "/usr/lib/openssh/sftp-server"
	for _, p := range []string{sshd, sftpServer} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not installed (make deps installs openssh-server)", p)
		}
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"host", "client"} {
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", k, "-f", filepath.Join(dir, k)).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(read("client.pub")), 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd run as root needs its privilege separation directory.
	if os.Geteuid() == 0 {
		os.MkdirAll("/run/sshd", 0o755)
	}
	port := freeTCPPort(t)
	s := &SSHD{
		Addr: fmt.Sprintf("127.0.0.1:%d", port), User: u.Username, Dir: dir,
		HostKey:   strings.TrimSpace(read("host.pub")),
		ClientKey: read("client"), ClientKeyFile: filepath.Join(dir, "client"),
	}
	conf := strings.Join([]string{
		"ListenAddress " + s.Addr,
		"HostKey " + filepath.Join(dir, "host"),
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"PermitRootLogin prohibit-password",
		"StrictModes no",
		"UsePAM no",
		"Subsystem sftp " + map[bool]string{false: sftpServer, true: "internal-sftp"}[internal],
		"LogLevel ERROR",
	}, "\n") + "\n"
	cfg := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(sshd, "-D", "-e", "-f", cfg)
	logf, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	done := make(chan struct{})
	go func() { s.cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-done
	})
	if !Eventually(10*time.Second, func() bool { return Greeting(s.Addr, time.Second, "SSH-2.0-OpenSSH") }) {
		b, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
		t.Fatalf("sshd on %s did not answer:\n%s", s.Addr, b)
	}
	return s
}

// CPU is the CPU time sshd and its finished sessions (their sshd
// processes and sftp-server) have used, once no session is left running:
// what serving the connections so far cost, to compare with a gateway
// node's Usage. ok is false if a session still runs after timeout.
func (s *SSHD) CPU(timeout time.Duration) (cpu time.Duration, ok bool) {
	pid := s.cmd.Process.Pid
	ok = Eventually(timeout, func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		return err == nil && strings.TrimSpace(string(b)) == ""
	})
	return procUsage(pid, true).CPU, ok
}

// SFTP runs OpenSSH's sftp client in batch mode against login@addr with
// key, not recording host keys, and returns its combined output.
func SFTP(addr, login, key, batch string, extra ...string) (string, error) {
	out, err := SFTPCommand(addr, login, key, batch, extra...).CombinedOutput()
	return string(out), err
}

// SFTPCommand is the command SFTP runs (AES-128-GCM, the client's default
// buffer size and requests in flight), for callers that want its
// ProcessState (CPU time).
func SFTPCommand(addr, login, key, batch string, extra ...string) *exec.Cmd {
	host, port, _ := net.SplitHostPort(addr)
	args := append([]string{"-P", port, "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-c", "aes128-gcm@openssh.com", "-b", "-"}, extra...)
	cmd := exec.Command("sftp", append(args, login+"@"+host)...)
	cmd.Stdin = strings.NewReader(batch)
	return cmd
}

func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
